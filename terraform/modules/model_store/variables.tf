variable "bucket_name" {
  description = "Name of the region's model bucket (globally unique; the region root derives it from region and account)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("\\.\\.", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and dashes."
  }
}

variable "kms_key_arn" {
  description = "ARN of the region's KMS key; every object is encrypted with it (SSE-KMS)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:...)."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects. Only for throwaway regions and tests."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "tenant_prefix" {
  description = "Prefix under which each tenant's own models live (tenants/<tenant>/). Only the tenants' model-writer roles may write there (bucket policy), each limited to its own prefix by its IAM policy."
  type        = string
  default     = "tenants/"

  validation {
    condition     = endswith(var.tenant_prefix, "/") && length(var.tenant_prefix) > 1 && !strcontains(var.tenant_prefix, "*")
    error_message = "tenant_prefix must be a non-empty prefix ending in / without wildcards."
  }
}

variable "tenant_writer_role_pattern" {
  description = "ARN pattern (ArnLike) of the roles that may write under tenant_prefix: the iam module's per-tenant writer roles, <name>-model-writer-<tenant>."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9*]+:role/", var.tenant_writer_role_pattern))
    error_message = "tenant_writer_role_pattern must be an IAM role ARN pattern (arn:aws:iam::<account>:role/...)."
  }
}

variable "admin_principal_arns" {
  description = "Principals besides the tenants' pipelines that may write or delete under tenant_prefix (break-glass and offboarding). Empty by default: nothing but a tenant's pipeline writes its models."
  type        = list(string)
  default     = []
}
