variable "name" {
  description = "Secret name."
  type        = string
}

variable "description" {
  description = "Secret description."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key the secret is encrypted with."
  type        = string
}

variable "recovery_window_days" {
  description = "Days a deleted secret stays recoverable (0: at once)."
  type        = number
}

variable "tags" {
  description = "Tags of the secret."
  type        = map(string)
}

variable "write_value" {
  description = "Write `value` as the secret's value (write-only)."
  type        = bool
}

variable "value" {
  description = "The value to write; ephemeral, so it is never stored by Terraform."
  type        = string
  default     = null
  ephemeral   = true
}

variable "value_version" {
  description = "Bump to write a new value."
  type        = number
}
