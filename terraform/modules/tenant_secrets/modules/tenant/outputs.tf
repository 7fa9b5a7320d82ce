output "arn" {
  description = "Secret ARN."
  value       = aws_secretsmanager_secret.this.arn
}

output "name" {
  description = "Secret name."
  value       = aws_secretsmanager_secret.this.name
}

output "kms_key_id" {
  description = "KMS key the secret is encrypted with."
  value       = aws_secretsmanager_secret.this.kms_key_id
}

output "tags" {
  description = "Tags of the secret."
  value       = aws_secretsmanager_secret.this.tags
}

output "key_versions" {
  description = "Number of write-only key versions managed (0 or 1); the value itself is never readable."
  value       = length(aws_secretsmanager_secret_version.this)
}
