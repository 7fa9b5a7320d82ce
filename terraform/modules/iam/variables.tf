variable "name" {
  description = "Name prefix of the roles (e.g. fairshare-eu-west-1)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (cluster module output)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/...)."
  }
}

variable "oidc_issuer_url" {
  description = "The cluster's OIDC issuer URL (https://...); the trust policy matches its host and path."
  type        = string

  validation {
    condition     = startswith(var.oidc_issuer_url, "https://")
    error_message = "oidc_issuer_url must start with https://."
  }
}

variable "model_bucket_arn" {
  description = "ARN of the region's model bucket the inference pods read."
  type        = string
}

variable "tenant_prefix" {
  description = "Prefix of the model bucket under which each tenant's own models live, as tenants/<tenant>/ (policy/models requires artifacts there)."
  type        = string
  default     = "tenants/"

  validation {
    condition     = endswith(var.tenant_prefix, "/") && !strcontains(var.tenant_prefix, "*")
    error_message = "tenant_prefix must end in / and hold no wildcard."
  }
}

variable "model_read_prefixes" {
  description = "Prefixes of the model bucket the inference pods may read (list and get). Tenants' prefixes by default; add e.g. catalog/ for the platform's own ONNX catalog models. Never the whole bucket."
  type        = list(string)
  default     = ["tenants/"]

  validation {
    condition     = length(var.model_read_prefixes) > 0 && alltrue([for p in var.model_read_prefixes : length(p) > 1 && endswith(p, "/") && !strcontains(p, "*")])
    error_message = "model_read_prefixes must be non-empty prefixes ending in / without wildcards (an empty prefix would be the whole bucket)."
  }
}

variable "tenant_writers" {
  description = "Per tenant id, the principals of its model pipeline (IAM role or account ARNs) that may assume its writer role: write under tenants/<tenant>/ only."
  type = map(object({
    principal_arns = list(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for t, w in var.tenant_writers : can(regex("^[a-z][a-z0-9-]{0,40}[a-z0-9]$", t)) && length(w.principal_arns) > 0])
    error_message = "tenant_writers keys must be tenant ids and each must name at least one principal ARN."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key the model bucket is encrypted with (used only through S3: kms:ViaService)."
  type        = string
}

variable "secrets_kms_key_arn" {
  description = "ARN of the KMS key the tenant secrets are encrypted with (used only through Secrets Manager: kms:ViaService)."
  type        = string
}

variable "cluster_autoscaler_service_account" {
  description = "Service account (in kube-system) Cluster Autoscaler runs as; trusted by its role."
  type        = string
  default     = "cluster-autoscaler"
}

variable "load_balancer_controller_service_account" {
  description = "Service account (in kube-system) the AWS Load Balancer Controller runs as; trusted by its role."
  type        = string
  default     = "aws-load-balancer-controller"
}

variable "tenant_secret_name_prefix" {
  description = "Name prefix of the tenant secrets (tenant_secrets module's name_prefix): the runtimes may read <prefix>/*/pseudonymisation-key secrets. A pattern, not a list of ARNs: an inline policy holds about 10 KB, far fewer than 1,000 ARNs."
  type        = string
  default     = "fairshare/tenants"

  validation {
    condition     = length(var.tenant_secret_name_prefix) > 0 && !strcontains(var.tenant_secret_name_prefix, "*")
    error_message = "tenant_secret_name_prefix must be a non-empty literal prefix without wildcards."
  }
}

variable "namespace" {
  description = "Kubernetes namespace the platform runs in (the Helm release's namespace)."
  type        = string
  default     = "fairshare"
}

variable "inference_service_account" {
  description = "Service account of the inference pods (the Helm chart's runtime service account)."
  type        = string
  default     = "fairshare-runtime"
}

variable "gateway_service_account" {
  description = "Service account of the control plane pods."
  type        = string
  default     = "fairshare-control-plane"
}

variable "tags" {
  description = "Tags added to every role."
  type        = map(string)
  default     = {}
}

variable "config_bundle" {
  description = "The versioned S3 object the control plane reads its config bundle from (chart config.source: s3://<bucket>/<key>, published by `make config-publish`): its bucket ARN, key and, when the bucket is KMS-encrypted, the key ARN. Null: the config travels in a ConfigMap and the control plane reads no bucket."
  type = object({
    bucket_arn  = string
    key         = string
    kms_key_arn = optional(string)
  })
  default = null

  validation {
    # try(): Terraform's || evaluates both sides, and a null config_bundle has no attributes.
    condition = var.config_bundle == null || try(
      can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.config_bundle.bucket_arn)) &&
      length(var.config_bundle.key) > 0 && !endswith(var.config_bundle.key, "/") && !strcontains(var.config_bundle.key, "*"),
      false
    )
    error_message = "config_bundle needs a bucket ARN (arn:aws:s3:::<bucket>) and one object key (no wildcard, not a prefix)."
  }
}

variable "audit_store" {
  description = "The region's audit bucket (audit_store module): its ARN, the prefix the control planes ship under and its KMS key. The control plane's role may put objects (with their retention) there only, read the bucket's Object Lock rule and encrypt through S3; it may not read, list or delete. Null: no audit shipping."
  type = object({
    bucket_arn  = string
    prefix      = string
    kms_key_arn = string
  })
  default = null

  validation {
    condition = var.audit_store == null || try(
      can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.audit_store.bucket_arn)) &&
      endswith(var.audit_store.prefix, "/") && length(var.audit_store.prefix) > 1 && !strcontains(var.audit_store.prefix, "*") &&
      can(regex("^arn:aws[a-z-]*:kms:", var.audit_store.kms_key_arn)),
      false
    )
    error_message = "audit_store needs a bucket ARN (arn:aws:s3:::<bucket>), a non-empty prefix ending in / without wildcards (an empty one would be the whole bucket) and a KMS key ARN."
  }
}

variable "audit_readers" {
  description = "Principals (IAM role, user or account ARNs: your auditors', or the platform team's that hands evidence over) that may assume the audit reader role: list and read the audit bucket's records and their locks, decrypt them through S3; never write, delete or change a lock. Empty: no reader role. Needs audit_store."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.audit_readers : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", p))])
    error_message = "audit_readers must be IAM principal ARNs: arn:aws:iam::<account>:root, :role/<name> or :user/<name>."
  }

  validation {
    condition     = length(var.audit_readers) == 0 || var.audit_store != null
    error_message = "audit_readers is set but audit_store is not: there is no audit bucket to read."
  }
}
