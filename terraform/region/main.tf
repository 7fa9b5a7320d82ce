# One serving region, composed from the modules. Everything region-specific comes from
# ../regions/<region>.tfvars; the tenants come from the same tenant specs the control plane serves.

data "aws_caller_identity" "current" {}

locals {
  name        = "${var.name}-${var.region}"
  tenants_dir = coalesce(var.tenants_dir, "${path.module}/../../config/tenants")
  tenant_specs = [
    for f in sort(fileset(local.tenants_dir, "*.yaml")) : yamldecode(file("${local.tenants_dir}/${f}"))
  ]
  # Residency: a tenant's secret exists only in regions the tenant allows.
  tenants = {
    for t in local.tenant_specs : t.id => {
      home            = t.regions.home
      allowed_regions = t.regions.allowed
    } if contains(t.regions.allowed, var.region)
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
  source        = "../modules/model_store"
  bucket_name   = "${local.name}-models-${data.aws_caller_identity.current.account_id}"
  kms_key_arn   = aws_kms_key.region.arn
  force_destroy = var.force_destroy
}

module "tenant_secrets" {
  source               = "../modules/tenant_secrets"
  region               = var.region
  tenants              = local.tenants
  kms_key_arn          = aws_kms_key.region.arn
  generate_seed        = var.generate_tenant_seeds
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
