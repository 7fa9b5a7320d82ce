mock_provider "aws" {
  mock_resource "aws_eks_cluster" {
    defaults = {
      arn      = "arn:aws:eks:eu-west-1:123456789012:cluster/fairshare-eu-west-1"
      identity = [{ oidc = [{ issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE" }] }]
    }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/fairshare-eu-west-1-cluster" }
  }
  mock_resource "aws_iam_openid_connect_provider" {
    defaults = { arn = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

variables {
  name               = "fairshare-eu-west-1"
  kubernetes_version = "1.35"
  subnet_ids         = ["subnet-a", "subnet-b"]
  kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/example"
}

run "private_api_with_secrets_encrypted_by_the_region_key" {
  command = apply # mocked: no cloud is touched; apply lets the OIDC provider see the cluster's issuer

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_public_access == false && aws_eks_cluster.this.vpc_config[0].endpoint_private_access
    error_message = "the Kubernetes API must be private by default"
  }

  assert {
    condition     = one(aws_eks_cluster.this.encryption_config[0].provider).key_arn == var.kms_key_arn
    error_message = "Kubernetes secrets must be encrypted with the region key"
  }

  assert {
    condition     = aws_iam_openid_connect_provider.this.url == "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
    error_message = "the OIDC provider must trust the cluster's issuer"
  }

  assert {
    condition     = contains(aws_eks_cluster.this.enabled_cluster_log_types, "audit") && aws_cloudwatch_log_group.cluster.name == "/aws/eks/fairshare-eu-west-1/cluster"
    error_message = "the audit log goes to the cluster's log group"
  }

  assert {
    condition     = aws_eks_cluster.this.access_config[0].authentication_mode == "API" && aws_eks_cluster.this.access_config[0].bootstrap_cluster_creator_admin_permissions == false
    error_message = "access entries only, and no implicit admin for whoever ran Terraform"
  }

  assert {
    condition     = length(aws_eks_access_entry.admin) == 0
    error_message = "no admin entry unless one is named"
  }

  assert {
    condition     = output.oidc_provider_arn == aws_iam_openid_connect_provider.this.arn
    error_message = "the OIDC provider ARN is an output for the iam module"
  }
}

run "an_open_api_is_refused" {
  command = plan

  variables {
    endpoint_public_access = true
    public_access_cidrs    = ["0.0.0.0/0"]
  }

  expect_failures = [var.public_access_cidrs]
}

run "a_non_kms_key_is_refused" {
  command = plan

  variables {
    kms_key_arn = "alias/fairshare"
  }

  expect_failures = [var.kms_key_arn]
}

run "named_admins_get_cluster_admin_access_entries" {
  command = plan

  variables {
    admin_principal_arns = ["arn:aws:iam::123456789012:role/platform-admin"]
  }

  assert {
    condition     = aws_eks_access_policy_association.admin["arn:aws:iam::123456789012:role/platform-admin"].policy_arn == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    error_message = "each admin principal gets the cluster-admin access policy"
  }

  assert {
    condition     = one(aws_eks_access_policy_association.admin["arn:aws:iam::123456789012:role/platform-admin"].access_scope).type == "cluster"
    error_message = "admin access is cluster-wide"
  }
}

run "audit_logs_cannot_be_turned_off" {
  command = plan

  variables {
    log_types = ["api", "authenticator"]
  }

  expect_failures = [var.log_types]
}

run "a_retention_cloudwatch_does_not_offer_is_refused" {
  command = plan

  variables {
    log_retention_days = 4
  }

  expect_failures = [var.log_retention_days]
}
