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

output "helm_values" {
  description = "Values the Helm chart needs from this region: pass with `helm upgrade --install -f <(terraform output -json helm_values)`."
  value = {
    region = var.region
    serviceAccounts = {
      runtime      = { roleArn = module.iam.inference_role_arn }
      controlplane = { roleArn = module.iam.gateway_role_arn }
    }
    modelStore  = { bucket = module.model_store.bucket_name }
    gpuTaintKey = "nvidia.com/gpu"
  }
}
