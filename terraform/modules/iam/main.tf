data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  issuer = trimprefix(var.oidc_issuer_url, "https://")
  tenant_secrets_arn = join(":", [
    "arn", data.aws_partition.current.partition, "secretsmanager", data.aws_region.current.name,
    data.aws_caller_identity.current.account_id, "secret", "${var.tenant_secret_name_prefix}/*",
  ])
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
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.model_bucket_arn]
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.model_bucket_arn}/*"]
  }
  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "inference" {
  name               = "${var.name}-model-reader"
  description        = "Inference pods read model artifacts (read-only) from the region's model bucket."
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
