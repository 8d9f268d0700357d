data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

# The key that encrypts every object of the lake bucket (SSE-KMS, with an S3 bucket key so a
# writer does not call KMS per object). The account root administers it; the lakehouse roles
# get only the KMS actions their IAM policies (iam.tf) name.
data "aws_iam_policy_document" "kms" {
  # A key policy, not an IAM policy: its Resource "*" is this key alone, and the one statement is
  # AWS's default key policy (the account administers the key and delegates use to IAM policies).
  #checkov:skip=CKV_AWS_109:Key policy: "*" is this key; the account root administering its own key is AWS's default key policy.
  #checkov:skip=CKV_AWS_111:Key policy: "*" is this key; the account root administering its own key is AWS's default key policy.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is this key, the only resource a key policy can name.
  statement {
    sid       = "AccountAdministersTheKey"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means this key

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
}

resource "aws_kms_key" "lake" {
  description             = "crypto-lakehouse: SSE-KMS of s3://${var.bucket_name}"
  enable_key_rotation     = true
  rotation_period_in_days = var.kms_rotation_period_days
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name_prefix}-lake"
  target_key_id = aws_kms_key.lake.key_id
}
