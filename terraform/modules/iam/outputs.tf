output "inference_role_arn" {
  description = "Role the inference pods' service account is annotated with (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.inference.arn
}

output "gateway_role_arn" {
  description = "Role the control plane's service account is annotated with (reads its config bundle, ships its audit files)."
  value       = aws_iam_role.gateway.arn
}

output "tenant_writer_role_arns" {
  description = "Per tenant, the role its model pipeline assumes to write under tenants/<tenant>/ of the model bucket."
  value       = { for t, r in aws_iam_role.tenant_writer : t => r.arn }
}

output "cluster_autoscaler_role_arn" {
  description = "Role Cluster Autoscaler's service account (kube-system) is annotated with."
  value       = aws_iam_role.cluster_autoscaler.arn
}

output "load_balancer_controller_role_arn" {
  description = "Role the AWS Load Balancer Controller's service account (kube-system) is annotated with."
  value       = aws_iam_role.load_balancer_controller.arn
}

output "addon_service_accounts" {
  description = "Service accounts (in kube-system) the Cluster Autoscaler and AWS Load Balancer Controller roles trust: the add-on releases must run as exactly these."
  value       = local.addon_service_accounts
}

output "audit_reader_role_arn" {
  description = "The role audit_readers assume to read the audit trail back (null without audit_readers)."
  value       = one(aws_iam_role.audit_reader[*].arn)
}
