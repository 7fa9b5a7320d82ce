variable "bucket_name" {
  description = "Name of the region's audit bucket (globally unique; the region root derives it from region and account)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("\\.\\.", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and dashes."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key every audit object is encrypted with (SSE-KMS); the region's audit key, used only through S3."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:...)."
  }
}

variable "prefix" {
  description = "Prefix the control planes ship under (<prefix><region>/<pod>/audit.jsonl.NNNNNN); their role may write there and nowhere else."
  type        = string
  default     = "audit/"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*/$", var.prefix))
    error_message = "prefix must be a non-empty key prefix ending in / (lowercase letters, digits, . _ -), without wildcards."
  }
}

variable "retention_days" {
  description = "Days each audit object is locked for (the bucket's default retention): policy/retention's audit_days, 400."
  type        = number
  default     = 400

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days, at least 1."
  }
}

variable "lock_mode" {
  description = "Object Lock mode of the default retention: COMPLIANCE (nobody can delete a record early, the account root included) or GOVERNANCE (principals with s3:BypassGovernanceRetention can: only for throwaway regions, which must be destroyable)."
  type        = string
  default     = "COMPLIANCE"

  validation {
    condition     = contains(["COMPLIANCE", "GOVERNANCE"], var.lock_mode)
    error_message = "lock_mode must be COMPLIANCE or GOVERNANCE."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its records. Only for throwaway regions and tests, with lock_mode GOVERNANCE: COMPLIANCE-locked records cannot be deleted by anyone before their retention ends."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "keep_days" {
  description = "Days a record is kept before S3 removes it: at least retention_days (the lock refuses an earlier delete anyway). Null: retention_days, policy/retention's period; records kept past it serve no purpose the policy names (storage limitation)."
  type        = number
  default     = null

  validation {
    condition     = var.keep_days == null || try(var.keep_days >= var.retention_days && floor(var.keep_days) == var.keep_days, false)
    error_message = "keep_days must be a whole number of days, at least retention_days: a record cannot be removed while it is locked."
  }
}
