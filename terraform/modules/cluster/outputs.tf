output "name" {
  description = "Cluster name (what `aws eks update-kubeconfig --name` takes)."
  value       = aws_eks_cluster.this.name
}

output "arn" {
  description = "Cluster ARN."
  value       = aws_eks_cluster.this.arn
}

output "endpoint" {
  description = "Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "certificate_authority" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = one(aws_eks_cluster.this.certificate_authority[*].data)
}

output "oidc_issuer_url" {
  description = "OIDC issuer URL of the cluster (https://...)."
  value       = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider that lets service accounts assume roles."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the control-plane logs (audit among them)."
  value       = aws_cloudwatch_log_group.cluster.name
}

output "cluster_security_group_id" {
  description = "Security group EKS created for the control plane and managed nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}
