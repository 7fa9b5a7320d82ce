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

output "kms_key_arn" {
  description = "The region's KMS key."
  value       = aws_kms_key.region.arn
}

output "tenant_secret_names" {
  description = "Secret name per tenant served in this region (names only; values are write-only)."
  value       = module.tenant_secrets.secret_names
}

output "chart_inputs" {
  description = "What the Helm install of this region needs: IRSA role ARNs for the runtime and control-plane service accounts (eks.amazonaws.com/role-arn), the model bucket, and the GPU taint the runtimes tolerate."
  value = {
    region                    = var.region
    model_bucket              = module.model_store.bucket_name
    runtime_role_arn          = module.iam.inference_role_arn
    control_plane_role_arn    = module.iam.gateway_role_arn
    gpu_taint                 = { key = "nvidia.com/gpu", value = "present", effect = "NoSchedule" }
    tenant_secret_name_prefix = "fairshare/tenants"
  }
}
