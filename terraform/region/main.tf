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
      condition     = length(local.missing_pools) == 0
      error_message = "config/regions.yaml gives ${var.region} the pools ${join(", ", local.missing_pools)}, but node_pools has no pool of that name and kind (gpu for an accelerator other than cpu)."
    }
  }
}

# The region's key: model objects, tenant secrets and Kubernetes Secrets are all encrypted with it.
resource "aws_kms_key" "region" {
  description             = "${local.name}: models, tenant secrets, Kubernetes secrets"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
}

resource "aws_kms_alias" "region" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.region.key_id
}

module "network" {
  source             = "../modules/network"
  name               = local.name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  enable_nat_gateway = var.enable_nat_gateway
  cluster_name       = local.name
}

module "cluster" {
  source                 = "../modules/cluster"
  name                   = local.name
  kubernetes_version     = var.kubernetes_version
  subnet_ids             = module.network.private_subnet_ids
  kms_key_arn            = aws_kms_key.region.arn
  endpoint_public_access = var.cluster_endpoint_public_access
  public_access_cidrs    = var.cluster_public_access_cidrs
}

module "node_pools" {
  source       = "../modules/node_pools"
  cluster_name = module.cluster.name
  subnet_ids   = module.network.private_subnet_ids
  pools        = var.node_pools
}

module "model_store" {
  source = "../modules/model_store"
  # config/regions.yaml's model_bucket when it names one: the policies (policy/models) hold tenants'
  # artifacts to that name, so the bucket Terraform creates must be the one the config names.
  bucket_name   = coalesce(try(local.config_region.model_bucket, null), "${local.name}-models-${data.aws_caller_identity.current.account_id}")
  kms_key_arn   = aws_kms_key.region.arn
  force_destroy = var.force_destroy
  # The iam module names each tenant's writer role <name>-model-writer-<tenant>.
  tenant_writer_role_pattern = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:role/${local.name}-model-writer-*"
}

# Each tenant's API key seed exists only while Terraform runs: it goes to Secrets Manager through a
# write-only argument, so neither the state nor a saved plan holds it.
ephemeral "aws_secretsmanager_random_password" "seed" {
  for_each            = var.generate_tenant_seeds ? local.tenants : {}
  password_length     = 48
  exclude_punctuation = true
}

module "tenant_secrets" {
  source               = "../modules/tenant_secrets"
  region               = var.region
  tenants              = local.tenants
  kms_key_arn          = aws_kms_key.region.arn
  generate_seed        = var.generate_tenant_seeds
  seeds                = { for id, p in ephemeral.aws_secretsmanager_random_password.seed : id => p.random_password }
  recovery_window_days = var.secret_recovery_window_days
}

module "iam" {
  source            = "../modules/iam"
  name              = local.name
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_issuer_url   = module.cluster.oidc_issuer_url
  model_bucket_arn  = module.model_store.bucket_arn
  kms_key_arn       = aws_kms_key.region.arn
  namespace         = var.namespace
}
