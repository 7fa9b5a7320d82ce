output "inference_role_arn" {
  description = "Role the inference pods' service account is annotated with (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.inference.arn
}

output "gateway_role_arn" {
  description = "Role the control plane's service account is annotated with to read tenant secrets."
  value       = aws_iam_role.gateway.arn
}
