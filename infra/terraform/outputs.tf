output "bucket_name" {
  description = "The lake bucket."
  value       = aws_s3_bucket.lake.id
}

output "bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "lakehouse_root" {
  description = "The value of LAKEHOUSE_ROOT (settings `root`) for this bucket."
  value       = "s3://${aws_s3_bucket.lake.id}${var.root_prefix == "" ? "" : "/${var.root_prefix}"}"
}

output "region" {
  description = "Region of the bucket: LAKEHOUSE_STORAGE_OPTIONS__AWS_REGION."
  value       = var.region
}

output "kms_key_arn" {
  description = "The KMS key encrypting the lake (SSE-KMS, rotated)."
  value       = aws_kms_key.lake.arn
}

output "access_log_bucket" {
  description = "Bucket receiving the S3 server access logs of the lake bucket."
  value       = aws_s3_bucket.access_logs.id
}

output "role_arns" {
  description = "Role ARN per kind of process: writer, job, maintenance, reader."
  value       = { for name, role in aws_iam_role.lake : name => role.arn }
}

output "policy_arns" {
  description = "Managed policy ARN per role (attach them to users or IRSA roles too)."
  value       = { for name, policy in aws_iam_policy.lake : name => policy.arn }
}
