resource "aws_secretsmanager_secret" "seed" {
  for_each = var.tenants

  name                    = "${var.name_prefix}/${each.key}/api-key-seed"
  description             = "API key seed of tenant ${each.key} in ${var.region}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days
  tags = merge(var.tags, {
    "fairshare:tenant"          = each.key
    "fairshare:allowed-regions" = join(" ", each.value.allowed_regions)
  })
}

# Ephemeral: the random value exists only while Terraform runs, and reaches AWS through a write-only
# argument, so neither the state nor a saved plan ever holds a tenant's secret.
ephemeral "aws_secretsmanager_random_password" "seed" {
  for_each = var.generate_seed ? var.tenants : {}

  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "seed" {
  for_each = var.generate_seed ? var.tenants : {}

  secret_id                = aws_secretsmanager_secret.seed[each.key].id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.seed[each.key].random_password
  secret_string_wo_version = var.seed_version
}
