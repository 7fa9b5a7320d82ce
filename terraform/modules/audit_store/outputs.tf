output "bucket_name" {
  description = "Name of the audit bucket."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the audit bucket (for IAM policies)."
  value       = aws_s3_bucket.this.arn
}

output "prefix" {
  description = "Prefix the control planes ship under (ends in /)."
  value       = var.prefix
}

output "retention" {
  description = "The default retention every audit object gets (mode and days), and the days after which S3 removes it (keep_days)."
  value       = { mode = var.lock_mode, days = var.retention_days, keep_days = local.keep_days }
}

output "kms_key_arn" {
  description = "KMS key the bucket encrypts with (writers need kms:GenerateDataKey on it, readers kms:Decrypt, both through S3)."
  value       = var.kms_key_arn
}
