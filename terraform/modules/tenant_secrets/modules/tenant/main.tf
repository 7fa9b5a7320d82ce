# One tenant's secret. A module instance per tenant keeps every reference inside it to one instance:
# indexing a 1,000-instance resource from each of 1,000 others (`aws_secretsmanager_secret.x[each.key]`)
# makes Terraform build the whole resource per reference, which made a 1,000-tenant plan 5x slower.
resource "aws_secretsmanager_secret" "this" {
  name                    = var.name
  description             = var.description
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "this" {
  count = var.write_value ? 1 : 0

  secret_id                = aws_secretsmanager_secret.this.id
  secret_string_wo         = var.value
  secret_string_wo_version = var.value_version
}
