variable "bucket_name" {
  description = "Name of the lake bucket (globally unique). The lakehouse root is s3://<bucket_name>/<root_prefix>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)."
  }
}

variable "root_prefix" {
  description = "Key prefix of the lakehouse root inside the bucket (LAKEHOUSE_ROOT=s3://<bucket>/<root_prefix>); \"\" for the bucket's top level."
  type        = string
  default     = "lake"

  validation {
    condition     = var.root_prefix == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.root_prefix))
    error_message = "root_prefix is a key prefix without a leading or trailing slash (e.g. \"lake\" or \"prod/lake\")."
  }
}

variable "region" {
  description = "AWS region of the bucket, the KMS key and the access-log bucket."
  type        = string
  default     = "eu-west-1"
}

variable "noncurrent_version_expiration_days" {
  description = <<-EOT
    Days a replaced or deleted object version is kept, per layer. Delta time travel does not need
    them (a Delta version's files stay current until vacuum deletes them); they are the undo for
    an accidental delete or overwrite. Bronze churns most (compaction + a 1 h vacuum horizon).
  EOT
  type        = map(number)
  default = {
    bronze = 7
    silver = 30
    gold   = 30
    meta   = 90
  }

  validation {
    condition     = alltrue([for layer in ["bronze", "silver", "gold", "meta"] : contains(keys(var.noncurrent_version_expiration_days), layer)])
    error_message = "noncurrent_version_expiration_days needs a value for each layer: bronze, silver, gold, meta."
  }

  validation {
    condition     = alltrue([for days in values(var.noncurrent_version_expiration_days) : days >= 1])
    error_message = "noncurrent_version_expiration_days values are at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which an unfinished multipart upload (a writer killed mid-upload) is aborted and its parts deleted."
  type        = number
  default     = 1
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs of the lake bucket are kept."
  type        = number
  default     = 90
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the lake's KMS key is deleted once scheduled for deletion (7-30)."
  type        = number
  default     = 30
}

variable "kms_rotation_period_days" {
  description = "Automatic rotation period of the lake's KMS key, 90-2560 days; null: AWS's default (365 days)."
  type        = number
  default     = null
}

variable "trusted_principal_arns" {
  description = <<-EOT
    Principals allowed to assume the writer, job, maintenance and reader roles (e.g. the node or
    IRSA roles of the cluster, a CI role). Empty: this account's root, i.e. any principal of the
    account whose own IAM policy allows sts:AssumeRole on the role.
  EOT
  type        = list(string)
  default     = []
}

variable "name_prefix" {
  description = "Prefix of the IAM role/policy names and the KMS alias."
  type        = string
  default     = "lakehouse"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "test_endpoint_url" {
  description = "TESTS ONLY: one endpoint (e.g. moto's http://127.0.0.1:PORT) for S3, IAM, KMS and STS; also skips the AWS credential/region checks and uses path-style S3. Leave null for AWS."
  type        = string
  default     = null
}
