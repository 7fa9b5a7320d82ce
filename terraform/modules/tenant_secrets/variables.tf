variable "region" {
  description = "Region the secrets live in; only tenants allowed in it get one."
  type        = string
}

variable "tenants" {
  description = <<-EOT
    Tenants served in this region, keyed by tenant id, as read from config/tenants/*.yaml by the region root.
    allowed_regions: every region the tenant's data may live in (recorded on the secret for the infrastructure policy).
  EOT
  type = map(object({
    home            = string
    allowed_regions = list(string)
  }))

  validation {
    condition     = alltrue([for id in keys(var.tenants) : can(regex("^[a-z][a-z0-9-]{0,40}[a-z0-9]$", id))])
    error_message = "tenant ids must be lowercase letters, digits and dashes (as in config/tenants)."
  }

  validation {
    condition     = alltrue([for id, t in var.tenants : contains(t.allowed_regions, var.region)])
    error_message = "every tenant given must allow this region; a tenant whose allowed regions exclude it would store data where it may not."
  }
}

variable "kms_key_arn" {
  description = "ARN of the region's KMS key the secrets are encrypted with."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:...)."
  }
}

variable "name_prefix" {
  description = "Secret names are <name_prefix>/<tenant>/pseudonymisation-key (the runtimes read <name_prefix>/*/pseudonymisation-key)."
  type        = string
  default     = "fairshare/tenants"
}

variable "generate_keys" {
  description = "Write keys[tenant] into each secret (write-only: never in state, plan or output). False leaves empty containers for an external rotation to fill (until then the tenant's pseudonymising requests get 503)."
  type        = bool
  default     = false
}

variable "keys" {
  description = "Pseudonymisation key per tenant id when generate_keys is true (at least 32 characters: the runtime refuses shorter keys): an ephemeral value (e.g. from the ephemeral aws_secretsmanager_random_password), never stored."
  type        = map(string)
  default     = null
  ephemeral   = true
}

variable "key_version" {
  description = "Bump to write a fresh random key into every tenant's secret (a new secret version; runtimes use it within their key TTL, and every pseudonym changes)."
  type        = number
  default     = 1
}

variable "recovery_window_days" {
  description = "Days a deleted secret stays recoverable; 0 deletes at once (throwaway regions and tests only)."
  type        = number
  default     = 30

  validation {
    condition     = var.recovery_window_days == 0 || (var.recovery_window_days >= 7 && var.recovery_window_days <= 30)
    error_message = "recovery_window_days must be 0 or between 7 and 30 (the Secrets Manager limits)."
  }
}

variable "tags" {
  description = "Tags added to every secret."
  type        = map(string)
  default     = {}
}
