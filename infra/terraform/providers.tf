# Credentials come from the usual AWS chain (environment, profile, instance/IRSA role): none
# are configured here. The endpoint overrides exist for S3/IAM/KMS-compatible test servers
# (tests/infra runs `apply` against moto's); leave them unset for AWS.
provider "aws" {
  region = var.region

  skip_credentials_validation = var.test_endpoint_url != null
  skip_requesting_account_id  = var.test_endpoint_url != null
  skip_metadata_api_check     = var.test_endpoint_url != null
  skip_region_validation      = var.test_endpoint_url != null
  s3_use_path_style           = var.test_endpoint_url != null

  dynamic "endpoints" {
    for_each = var.test_endpoint_url == null ? [] : [var.test_endpoint_url]
    content {
      iam = endpoints.value
      kms = endpoints.value
      s3  = endpoints.value
      sts = endpoints.value
    }
  }

  default_tags {
    tags = merge({ project = "crypto-lakehouse" }, var.tags)
  }
}
