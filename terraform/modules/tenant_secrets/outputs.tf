output "secret_arns" {
  description = "ARN of each tenant's secret, keyed by tenant id (the values are never output)."
  value       = { for id, t in module.tenant : id => t.arn }
}

output "secret_names" {
  description = "Name of each tenant's secret, keyed by tenant id."
  value       = { for id, t in module.tenant : id => t.name }
}

output "name_prefix" {
  description = "The secrets' name prefix: <name_prefix>/<tenant>/pseudonymisation-key (the chart's inference.pseudonymisationKeys.secretPrefix)."
  value       = var.name_prefix
}
