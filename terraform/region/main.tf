# One serving region, composed from the modules. Everything region-specific comes from
# ../regions/<region>.tfvars; the tenants come from the same tenant specs the control plane serves.

data "aws_caller_identity" "current" {}

locals {
  name        = "${var.name}-${var.region}"
  tenants_dir = coalesce(var.tenants_dir, "${path.module}/../../config/tenants")
  # The serving pools this region must have, from the same config/regions.yaml the control plane reads.
  config_regions = yamldecode(file(coalesce(var.regions_file, "${path.module}/../../config/regions.yaml"))).regions
  config_region  = one([for r in local.config_regions : r if r.id == var.region])
  config_pools = local.config_region == null ? {} : {
    for p in local.config_region.pools : p.name => (try(p.accelerator, "cpu") == "cpu" ? "cpu" : "gpu")
  }
  config_gpus = local.config_region == null ? {} : {
    for p in local.config_region.pools : p.name => try(p.gpus_per_replica, 1)
  }
  missing_pools = sort([for name, kind in local.config_pools : "${name} (${kind})" if try(var.node_pools[name].kind, "") != kind])
  tenant_specs = [
    for f in sort(fileset(local.tenants_dir, "*.yaml")) : yamldecode(file("${local.tenants_dir}/${f}"))
  ]
  # Residency: a tenant's secret exists only in regions the tenant allows. An offboarded tenant
  # (`offboard: true`) has none: the next apply schedules its secret for deletion after
  # var.secret_recovery_window_days, as `fairshare tenant offboard` does at once.
  tenants = {
    for t in local.tenant_specs : t.id => {
      home            = t.regions.home
      allowed_regions = t.regions.allowed
    } if contains(t.regions.allowed, var.region) && !try(t.offboard, false)
  }
}

# Fails the plan, before anything is created, when this variable file and config/regions.yaml disagree.
resource "terraform_data" "config_consistency" {
  input = local.config_pools

  lifecycle {
    precondition {
      condition     = local.config_region != null
      error_message = "region ${var.region} is not in config/regions.yaml; add it there first, so the control plane serves it."
    }
    precondition {
      condition     = !local.eks_addons || length(var.cluster_admin_principal_arns) > 0
      error_message = "set cluster_admin_principal_arns in terraform/regions/${var.region}.tfvars to the IAM role(s) that administer the cluster: it uses access entries only, so without one nobody can reach its API."
    }
    precondition {
      condition     = length(local.missing_pools) == 0
      error_message = "config/regions.yaml gives ${var.region} the pools ${join(", ", local.missing_pools)}, but node_pools has no pool of that name and kind (gpu for an accelerator other than cpu)."
    }
  }
}

# One key per kind of data the region holds, each usable only through the service that holds it
# (kms:ViaService): model objects (S3), audit records (S3), tenant secrets (Secrets Manager), Kubernetes
# Secrets (EKS).
# A principal allowed to read a bucket or a secret cannot take the key elsewhere and decrypt with it.
locals {
  kms_services = {
    models  = { service = "s3", what = "model objects" }
    audit   = { service = "s3", what = "audit records" }
    secrets = { service = "secretsmanager", what = "tenant secrets" }
    cluster = { service = "eks", what = "Kubernetes Secrets" }
  }
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  # local.emulated (providers.tf): aws_endpoint is set, so every call goes to an emulator with fake keys.
  eks_addons = coalesce(var.install_eks_addons, !local.emulated)
}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "kms" {
  for_each = local.kms_services
  # Administration by the account's IAM (so a key is never orphaned), without any use of the key
  # (not kms:Create*: it covers kms:CreateGrant, which hands use of the key to anyone).
  statement {
    sid = "AdministerWithoutUse"
    actions = ["kms:CreateAlias", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
      "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
  # Use, for principals of this account that IAM allows, only through the key's own service.
  statement {
    sid       = "UseOnlyThrough${title(each.value.service)}"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["${each.value.service}.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_kms_key" "service" {
  for_each                = local.kms_services
  description             = "${local.name}: ${each.value.what} (through ${each.value.service} only)"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms[each.key].json
  tags                    = { "fairshare:key-for" = each.value.service }
}

resource "aws_kms_alias" "service" {
  for_each      = local.kms_services
  name          = "alias/${local.name}-${each.key}"
  target_key_id = aws_kms_key.service[each.key].key_id
}

# The one region key of earlier versions encrypted Kubernetes Secrets, which EKS cannot move to another key:
# it becomes the cluster key, and S3 and Secrets Manager move to new keys (see docs/region-rollout.md).
moved {
  from = aws_kms_key.region
  to   = aws_kms_key.service["cluster"]
}

module "network" {
  source             = "../modules/network"
  name               = local.name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  enable_nat_gateway = var.enable_nat_gateway
  nat_gateway_per_az = var.nat_gateway_per_az
  cluster_name       = local.name
}

module "cluster" {
  source                 = "../modules/cluster"
  name                   = local.name
  kubernetes_version     = var.kubernetes_version
  subnet_ids             = module.network.private_subnet_ids
  kms_key_arn            = aws_kms_key.service["cluster"].arn
  endpoint_public_access = var.cluster_endpoint_public_access
  public_access_cidrs    = var.cluster_public_access_cidrs
  log_retention_days     = var.cluster_log_retention_days
  admin_principal_arns   = local.eks_addons ? var.cluster_admin_principal_arns : []
}

module "node_pools" {
  source       = "../modules/node_pools"
  cluster_name = module.cluster.name
  subnet_ids   = module.network.private_subnet_ids
  # A GPU pool's replica asks for its config pool's gpus_per_replica GPUs and the chart's GPU runtime
  # requests (gpu_replica_request, equal to helm/fairshare values inference.resources.gpu.requests).
  pools = { for name, p in var.node_pools : name => merge(p, p.kind != "gpu" ? {} : {
    replica_request = {
      gpus       = try(local.config_gpus[name], 1)
      cpu        = var.gpu_replica_request.cpu
      memory_mib = var.gpu_replica_request.memory_gib * 1024
    }
  }) }
}

# EKS add-ons, installed and upgraded by EKS itself. Against an emulator (aws_endpoint) they are left out:
# none implements the add-on API; policy/infrastructure then excuses only the missing VPC CNI add-on.
locals {
  addons = !local.eks_addons ? {} : {
    # Network policy enforcement: without it every NetworkPolicy the chart renders does nothing.
    vpc-cni = jsonencode({ enableNetworkPolicy = "true" })
    # Pods get AWS credentials from the agent (EKS Pod Identity), not from the node's metadata service.
    eks-pod-identity-agent = null
    kube-proxy             = null
    coredns                = null
    # The resource metrics API, without which no HorizontalPodAutoscaler ever moves (EKS community add-on).
    metrics-server = null
  }
}

resource "aws_eks_addon" "this" {
  for_each                    = local.addons
  cluster_name                = module.cluster.name
  addon_name                  = each.key
  addon_version               = lookup(var.eks_addon_versions, each.key, null)
  configuration_values        = each.value
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"
  # CoreDNS and metrics-server run as pods: they need nodes to become active.
  depends_on = [module.node_pools]
}

module "model_store" {
  source = "../modules/model_store"
  # config/regions.yaml's model_bucket when it names one: the policies (policy/models) hold tenants'
  # artifacts to that name, so the bucket Terraform creates must be the one the config names.
  bucket_name   = coalesce(try(local.config_region.model_bucket, null), "${local.name}-models-${data.aws_caller_identity.current.account_id}")
  kms_key_arn   = aws_kms_key.service["models"].arn
  force_destroy = var.force_destroy
  # The iam module names each tenant's writer role <name>-model-writer-<tenant>.
  tenant_writer_role_pattern = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:role/${local.name}-model-writer-*"
}

# The control planes' audit trail, shipped file by file under <prefix><region>/<pod>/ and locked for the
# retention policy/retention gives audit records. A throwaway region (force_destroy) locks in GOVERNANCE mode,
# which destroy can bypass: a COMPLIANCE-locked record cannot be deleted by anyone, so neither could its bucket.
module "audit_store" {
  source         = "../modules/audit_store"
  bucket_name    = "${local.name}-audit-${data.aws_caller_identity.current.account_id}"
  kms_key_arn    = aws_kms_key.service["audit"].arn
  retention_days = var.audit_retention_days
  lock_mode      = var.force_destroy ? "GOVERNANCE" : "COMPLIANCE"
  force_destroy  = var.force_destroy
}

# Each tenant's pseudonymisation key exists only while Terraform runs: it goes to Secrets Manager through
# a write-only argument, so neither the state nor a saved plan holds it. 48 characters (the runtime
# refuses keys under 32 bytes).
ephemeral "aws_secretsmanager_random_password" "tenant_key" {
  for_each            = var.generate_tenant_keys ? local.tenants : {}
  password_length     = 48
  exclude_punctuation = true
}

module "tenant_secrets" {
  source               = "../modules/tenant_secrets"
  region               = var.region
  tenants              = local.tenants
  kms_key_arn          = aws_kms_key.service["secrets"].arn
  generate_keys        = var.generate_tenant_keys
  keys                 = { for id, p in ephemeral.aws_secretsmanager_random_password.tenant_key : id => p.random_password }
  recovery_window_days = var.secret_recovery_window_days
}

module "iam" {
  source              = "../modules/iam"
  name                = local.name
  oidc_provider_arn   = module.cluster.oidc_provider_arn
  oidc_issuer_url     = module.cluster.oidc_issuer_url
  model_bucket_arn    = module.model_store.bucket_arn
  kms_key_arn         = aws_kms_key.service["models"].arn
  secrets_kms_key_arn = aws_kms_key.service["secrets"].arn
  # The runtimes may read exactly the secrets tenant_secrets creates.
  tenant_secret_name_prefix = module.tenant_secrets.name_prefix
  namespace                 = var.namespace
  # The control plane's read of its config bundle (chart config.source: s3://...), when it has one.
  config_bundle = var.config_bundle
  # What the control plane ships its audit files to: put-only, under the audit prefix.
  audit_store = {
    bucket_arn  = module.audit_store.bucket_arn
    prefix      = module.audit_store.prefix
    kms_key_arn = aws_kms_key.service["audit"].arn
  }
  # Who may read that trail back (an auditor, or whoever hands them evidence): read-only.
  audit_readers = var.audit_reader_arns
}
