# Least-privilege access to the lake, one role per kind of process. Object ARNs are per layer
# (<root>/<layer>/*); listing is allowed only under the layers a role uses. Delta needs no
# s3:DeleteObject to write (a commit only adds files and log entries; `_last_checkpoint` is
# overwritten with PutObject): only maintenance (vacuum, log clean-up, retention) deletes.
# No role may delete object *versions*: that undo is left to the lifecycle rules (s3.tf).
#
#   writer       `lakehouse stream` shards: bronze only (its tables, Delta logs and sessions ledger)
#   job          promote-silver, build-gold, backfill: read bronze, write silver and gold
#   maintenance  compact, checkpoint, vacuum, retention, archive-import, tags: every layer, with delete
#   reader       queries, notebooks, the query service: read-only
locals {
  layer_objects = { for layer in local.layers : layer => "${aws_s3_bucket.lake.arn}/${local.prefix}${layer}/*" }
  layer_listing = { for layer in local.layers : layer => ["${local.prefix}${layer}/*", "${local.prefix}${layer}"] }

  trusted_principals = length(var.trusted_principal_arns) > 0 ? var.trusted_principal_arns : [local.account_root]
}

# --- writer: bronze read/write, no delete ------------------------------------------------------
data "aws_iam_policy_document" "writer" {
  statement {
    sid       = "BronzeObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = [local.layer_objects["bronze"]]
  }

  statement {
    sid       = "ListBronzeAndDeltaLogs"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.layer_listing["bronze"]
    }
  }

  statement {
    sid       = "EncryptAndDecrypt"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
  }
}

# --- job: read bronze, read/write silver and gold, no delete -----------------------------------
data "aws_iam_policy_document" "job" {
  statement {
    sid       = "ReadBronze"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [local.layer_objects["bronze"]]
  }

  statement {
    sid       = "WriteSilverAndGold"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = [local.layer_objects["silver"], local.layer_objects["gold"]]
  }

  statement {
    sid       = "ListBronzeSilverGold"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = concat(local.layer_listing["bronze"], local.layer_listing["silver"], local.layer_listing["gold"])
    }
  }

  statement {
    sid       = "EncryptAndDecrypt"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
  }
}

# --- maintenance: every layer, read/write/delete ------------------------------------------------
data "aws_iam_policy_document" "maintenance" {
  statement {
    sid       = "AllLayers"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:DeleteObject"]
    resources = values(local.layer_objects)
  }

  statement {
    sid       = "ListAllLayers"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = flatten(values(local.layer_listing))
    }
  }

  statement {
    sid       = "EncryptAndDecrypt"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
  }
}

# --- reader: read-only ------------------------------------------------------------------------
data "aws_iam_policy_document" "reader" {
  statement {
    sid       = "ReadAllLayers"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = values(local.layer_objects)
  }

  statement {
    sid       = "ListAllLayers"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = flatten(values(local.layer_listing))
    }
  }

  statement {
    sid       = "Decrypt"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
  }
}

locals {
  role_policies = {
    writer      = data.aws_iam_policy_document.writer.json
    job         = data.aws_iam_policy_document.job.json
    maintenance = data.aws_iam_policy_document.maintenance.json
    reader      = data.aws_iam_policy_document.reader.json
  }
}

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "TrustedPrincipals"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = local.trusted_principals
    }
  }
}

resource "aws_iam_policy" "lake" {
  for_each    = local.role_policies
  name        = "${var.name_prefix}-${each.key}"
  description = "crypto-lakehouse ${each.key}: access to s3://${var.bucket_name}/${var.root_prefix}"
  policy      = each.value
}

resource "aws_iam_role" "lake" {
  for_each             = local.role_policies
  name                 = "${var.name_prefix}-${each.key}"
  description          = "crypto-lakehouse ${each.key}"
  assume_role_policy   = data.aws_iam_policy_document.assume_role.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "lake" {
  for_each   = local.role_policies
  role       = aws_iam_role.lake[each.key].name
  policy_arn = aws_iam_policy.lake[each.key].arn
}
