output "bucket_name" {
  description = "Name of the model bucket."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the model bucket (for IAM policies)."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "KMS key the bucket encrypts with (readers need kms:Decrypt on it)."
  value       = var.kms_key_arn
}
