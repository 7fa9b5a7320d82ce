data "aws_iam_policy_document" "assume_eks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.name}-cluster"
  assume_role_policy = data.aws_iam_policy_document.assume_eks.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
}

data "aws_region" "current" {}

# The cluster role wraps the data keys of Kubernetes Secrets with the cluster key, only through EKS.
data "aws_iam_policy_document" "secrets_key" {
  statement {
    sid       = "EnvelopeEncryptSecretsThroughEks"
    actions   = ["kms:Encrypt", "kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["eks.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
  statement {
    sid       = "DescribeSecretsKey"
    actions   = ["kms:DescribeKey", "kms:ListGrants"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "secrets_key" {
  name   = "encrypt-kubernetes-secrets"
  role   = aws_iam_role.cluster.id
  policy = data.aws_iam_policy_document.secrets_key.json
}

# Created before the cluster so its retention (not EKS's default: forever) applies from the first line.
resource "aws_cloudwatch_log_group" "cluster" {
  name              = "/aws/eks/${var.name}/cluster"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  # Control-plane logs, the audit log among them: who did what to which object through the API.
  enabled_cluster_log_types = var.log_types

  # Access entries only (no aws-auth ConfigMap), and no admin rights implied for whoever ran Terraform:
  # cluster admins are the principals named in admin_principal_arns.
  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = var.endpoint_public_access
    public_access_cidrs     = var.endpoint_public_access ? var.public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = var.kms_key_arn
    }
  }

  tags = var.tags

  # The role must keep its policy while EKS deletes the cluster's network interfaces.
  depends_on = [aws_iam_role_policy_attachment.cluster, aws_iam_role_policy.secrets_key, aws_cloudwatch_log_group.cluster]
}

# Cluster administrators: an access entry each, with the EKS cluster-admin access policy cluster-wide.
resource "aws_eks_access_entry" "admin" {
  for_each      = toset(var.admin_principal_arns)
  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  type          = "STANDARD"
  tags          = var.tags
}

resource "aws_eks_access_policy_association" "admin" {
  for_each      = aws_eks_access_entry.admin
  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value.principal_arn
  policy_arn    = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
  access_scope {
    type = "cluster"
  }
}

# IRSA: pods assume IAM roles through the cluster's OIDC issuer (the iam module trusts this provider).
resource "aws_iam_openid_connect_provider" "this" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}
