data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  issuer = trimprefix(var.oidc_issuer_url, "https://")
  tenant_secrets_arn = join(":", [
    "arn", data.aws_partition.current.partition, "secretsmanager", data.aws_region.current.name,
    data.aws_caller_identity.current.account_id, "secret", "${var.tenant_secret_name_prefix}/*",
  ])
  # What the inference pods may read: the tenants' prefixes (and any other prefix the platform adds,
  # e.g. catalog/ for its own ONNX models), never the whole bucket.
  model_read_arns = [for p in var.model_read_prefixes : "${var.model_bucket_arn}/${p}*"]
  # Each tenant's pipeline writes under tenants/<tenant>/ only: the prefix policy/models requires of
  # the tenant's artifacts, so no other tenant's (or the platform's) role can put bytes a tenant serves.
  tenant_write_arns = { for t, _ in var.tenant_writers : t => "${var.model_bucket_arn}/${var.tenant_prefix}${t}/*" }
}

# Only the named service account in the named namespace may assume each role (IRSA).
data "aws_iam_policy_document" "trust" {
  for_each = {
    inference = var.inference_service_account
    gateway   = var.gateway_service_account
  }
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.value}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "read_models" {
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [var.model_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for p in var.model_read_prefixes : "${p}*"]
    }
  }
  statement {
    sid       = "LocateBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = [var.model_bucket_arn]
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = local.model_read_arns
  }
  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "inference" {
  name               = "${var.name}-model-reader"
  description        = "Inference pods read model artifacts (read-only) under the tenant prefixes of the region's model bucket."
  assume_role_policy = data.aws_iam_policy_document.trust["inference"].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "inference" {
  name   = "read-models"
  role   = aws_iam_role.inference.id
  policy = data.aws_iam_policy_document.read_models.json
}

data "aws_iam_policy_document" "read_tenant_secrets" {
  statement {
    sid       = "ReadTenantSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [local.tenant_secrets_arn]
  }
  statement {
    sid       = "DecryptTenantSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "gateway" {
  name               = "${var.name}-tenant-secrets-reader"
  description        = "The control plane reads tenant API key seeds to verify tenant API keys."
  assume_role_policy = data.aws_iam_policy_document.trust["gateway"].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "gateway" {
  name   = "read-tenant-secrets"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.read_tenant_secrets.json
}

# One writer role per tenant pipeline: only the principals the tenant's entry names may assume it, and it
# may write only under tenants/<tenant>/. No other role of the platform writes there (the model reader
# is read-only), so the bytes a tenant's route points at are the bytes its own pipeline put there.
data "aws_iam_policy_document" "writer_trust" {
  for_each = var.tenant_writers
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = each.value.principal_arns
    }
  }
}

data "aws_iam_policy_document" "write_tenant_models" {
  for_each = var.tenant_writers
  statement {
    sid       = "WriteOwnPrefix"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.tenant_write_arns[each.key]]
  }
  statement {
    sid       = "ListOwnPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.model_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.tenant_prefix}${each.key}/*"]
    }
  }
  statement {
    sid       = "EncryptModels"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "tenant_writer" {
  for_each           = var.tenant_writers
  name               = "${var.name}-model-writer-${each.key}"
  description        = "Tenant ${each.key}'s pipeline writes its own models under ${var.tenant_prefix}${each.key}/ of the model bucket."
  assume_role_policy = data.aws_iam_policy_document.writer_trust[each.key].json
  tags               = merge(var.tags, { "fairshare:tenant" = each.key })
}

resource "aws_iam_role_policy" "tenant_writer" {
  for_each = var.tenant_writers
  name     = "write-own-models"
  role     = aws_iam_role.tenant_writer[each.key].id
  policy   = data.aws_iam_policy_document.write_tenant_models[each.key].json
}
