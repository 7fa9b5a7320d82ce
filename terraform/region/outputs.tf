output "region" {
  description = "The region built."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster name (`aws eks update-kubeconfig --region <region> --name <cluster_name>`)."
  value       = module.cluster.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.cluster.endpoint
}

output "node_groups" {
  description = "Node groups per pool: kind, accelerator, taint key, scaling bounds."
  value       = module.node_pools.node_groups
}

output "model_bucket" {
  description = "The region's model bucket."
  value       = module.model_store.bucket_name
}

output "audit_bucket" {
  description = "The region's audit bucket: the control planes' shipped audit files, under audit/<region>/<pod>/, Object Lock on."
  value       = module.audit_store.bucket_name
}

output "audit_reader_role_arn" {
  description = "The role audit_reader_arns assume to read the audit trail back (aws sts assume-role; docs/helm.md, \"Audit trail\"); null without audit_reader_arns."
  value       = module.iam.audit_reader_role_arn
}

output "kms_key_arns" {
  description = "The region's KMS keys by what they encrypt: models (S3), audit (S3), secrets (Secrets Manager), cluster (Kubernetes Secrets)."
  value       = { for k, key in aws_kms_key.service : k => key.arn }
}

output "tenant_secret_names" {
  description = "Secret name per tenant served in this region (names only; values are write-only)."
  value       = module.tenant_secrets.secret_names
}

output "chart_inputs" {
  description = "What the Helm installs of this region need: IRSA role ARNs for the runtime and control-plane service accounts and for the Cluster Autoscaler and AWS Load Balancer Controller releases (eks.amazonaws.com/role-arn), the model bucket, the audit bucket and prefix the control planes ship their audit files to (the chart's controlPlane.audit.bucket and prefix), the GPU taint the runtimes tolerate, and the tenant secrets' name prefix (the chart's inference.pseudonymisationKeys.secretPrefix)."
  value = {
    region                    = var.region
    model_bucket              = module.model_store.bucket_name
    audit_bucket              = module.audit_store.bucket_name
    audit_prefix              = module.audit_store.prefix
    runtime_role_arn          = module.iam.inference_role_arn
    control_plane_role_arn    = module.iam.gateway_role_arn
    cluster_autoscaler_role   = module.iam.cluster_autoscaler_role_arn
    load_balancer_role        = module.iam.load_balancer_controller_role_arn
    cluster_name              = module.cluster.name
    vpc_id                    = module.network.vpc_id
    gpu_taint                 = { key = "nvidia.com/gpu", value = "present", effect = "NoSchedule" }
    tenant_secret_name_prefix = module.tenant_secrets.name_prefix
  }
}

output "cluster_addons_values" {
  description = "Values for helm/fairshare-cluster-addons (Cluster Autoscaler and the AWS Load Balancer Controller, in kube-system): cluster, region, VPC, each release's service account with the IRSA role that trusts it, and the auto-discovery tags on the node groups. JSON is YAML: `terraform output -json cluster_addons_values > addons.json` is a values file as written (make addons-install)."
  value = {
    cluster = { kubernetesVersion = var.kubernetes_version }
    aws-load-balancer-controller = {
      clusterName = module.cluster.name
      region      = var.region
      vpcId       = module.network.vpc_id
      serviceAccount = {
        name        = module.iam.addon_service_accounts.load_balancer
        annotations = { "eks.amazonaws.com/role-arn" = module.iam.load_balancer_controller_role_arn }
      }
    }
    cluster-autoscaler = {
      awsRegion     = var.region
      autoDiscovery = { clusterName = module.cluster.name, tags = sort(keys(module.node_pools.autoscaler_discovery_tags)) }
      rbac = { serviceAccount = {
        name        = module.iam.addon_service_accounts.cluster_autoscaler
        annotations = { "eks.amazonaws.com/role-arn" = module.iam.cluster_autoscaler_role_arn }
      } }
    }
  }
}
