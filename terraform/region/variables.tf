variable "region" {
  description = "AWS region this root builds, e.g. eu-west-1 (an id from config/regions.yaml)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Platform name; resources are named <name>-<region>."
  type        = string
  default     = "fairshare"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the region's VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones of the region to use (2 to 6), e.g. [\"eu-west-1a\", \"eu-west-1b\"]."
  type        = list(string)

  validation {
    condition     = alltrue([for az in var.availability_zones : startswith(az, var.region)])
    error_message = "every availability zone must belong to var.region (e.g. eu-west-1a for eu-west-1)."
  }
}

variable "enable_nat_gateway" {
  description = "Give private nodes internet egress through NAT gateways (image, model and credential traffic also has VPC endpoints)."
  type        = bool
  default     = true
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per availability zone (default), so losing a zone stops only its own egress; false keeps one, cheaper, in the first zone."
  type        = bool
  default     = true
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the cluster: one in EKS standard support (policy/infrastructure keeps the table and refuses others)."
  type        = string
  default     = "1.35"
}

variable "cluster_admin_principal_arns" {
  description = "IAM roles or users that administer the cluster (EKS access entries with AmazonEKSClusterAdminPolicy). Required on AWS: the cluster uses access entries only and grants whoever ran Terraform nothing."
  type        = list(string)
  default     = []
}

variable "cluster_log_retention_days" {
  description = "Days CloudWatch keeps the control-plane logs (api, audit, authenticator): one of CloudWatch's retention values."
  type        = number
  default     = 365

  validation {
    # CloudWatch refuses any other value, at apply, after the cluster is created.
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.cluster_log_retention_days)
    error_message = "cluster_log_retention_days must be one of CloudWatch Logs' retention values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "install_eks_addons" {
  description = "Install the EKS add-ons (VPC CNI with network policy enforcement, kube-proxy, CoreDNS, Pod Identity agent, metrics-server) and the admin access entries. Null (default): yes on AWS, no with aws_endpoint, whose emulator implements neither API."
  type        = bool
  default     = null
}

variable "eks_addon_versions" {
  description = "Add-on version pins by add-on name (e.g. { vpc-cni = \"v1.20.0-eksbuild.1\" }); an add-on not named gets EKS's default for the cluster's Kubernetes version."
  type        = map(string)
  default     = {}
}

variable "gpu_replica_request" {
  description = "CPU cores and memory (GiB) one GPU serving replica requests: the chart's inference.resources.gpu.requests (helm/fairshare/values.yaml). Its GPUs come from config/regions.yaml gpus_per_replica. Every GPU pool's instance types must hold it (policy/infrastructure)."
  type = object({
    cpu        = number
    memory_gib = number
  })
  default = { cpu = 4, memory_gib = 16 }
}

variable "cluster_endpoint_public_access" {
  description = "Expose the Kubernetes API publicly (restricted to cluster_public_access_cidrs)."
  type        = bool
  default     = false
}

variable "cluster_public_access_cidrs" {
  description = "CIDRs allowed to reach a public Kubernetes API."
  type        = list(string)
  default     = []
}

variable "node_pools" {
  description = "Node groups keyed by pool name; see modules/node_pools (kind system|cpu|gpu, instance types, scaling bounds). Serving pool names match config/regions.yaml."
  type = map(object({
    kind           = string
    instance_types = list(string)
    accelerator    = optional(string, "cpu")
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size_gb   = optional(number, 100)
    ami_type       = optional(string)
    capacity_type  = optional(string, "ON_DEMAND")
    labels         = optional(map(string), {})
  }))
}

variable "tenants_dir" {
  description = "Directory of tenant specs (config/tenants/*.yaml); every tenant allowed in this region gets a secret. Null: the repository's config/tenants."
  type        = string
  default     = null
}

variable "regions_file" {
  description = "The platform's regions file (config/regions.yaml); this region's serving pools must all be in node_pools. Null: the repository's."
  type        = string
  default     = null
}

variable "generate_tenant_keys" {
  description = "Write a random pseudonymisation key into each tenant secret (write-only, never in state). False leaves empty secrets for an external rotation to fill."
  type        = bool
  default     = true
}

variable "namespace" {
  description = "Kubernetes namespace the Helm release runs in (trusted by the IRSA roles)."
  type        = string
  default     = "fairshare"
}

variable "kms_deletion_window_days" {
  description = "Days a destroyed region key waits before AWS deletes it (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted tenant secret stays recoverable; 0 only for throwaway regions."
  type        = number
  default     = 30

  validation {
    # Checked here too, so the message names the variable a user sets, not the module's.
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30 (the Secrets Manager limits)."
  }
}

variable "force_destroy" {
  description = "Allow destroy to delete a model bucket that still holds models, and the audit bucket with its records (locked in GOVERNANCE mode then, not COMPLIANCE). Only for throwaway regions."
  type        = bool
  default     = false
}

variable "aws_endpoint" {
  description = "Send every AWS API call to this endpoint (e.g. http://127.0.0.1:5000 for a moto server) with fake credentials. Null (default) is real AWS."
  type        = string
  default     = null

  validation {
    condition     = var.aws_endpoint == null || can(regex("^https?://", var.aws_endpoint))
    error_message = "aws_endpoint must be an http(s) URL."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of fairshare:region and fairshare:managed-by)."
  type        = map(string)
  default     = {}
}

variable "config_bundle" {
  description = "The versioned S3 object the control plane reads its config bundle from (chart config.source: s3://<bucket>/<key>; `make config-publish`): bucket ARN, key, and the bucket's KMS key ARN if any. Null: the config travels in a ConfigMap."
  type = object({
    bucket_arn  = string
    key         = string
    kms_key_arn = optional(string)
  })
  default = null
}

variable "audit_retention_days" {
  description = "Days each shipped audit file is locked for (Object Lock default retention, COMPLIANCE mode): policy/retention's audit_days, 400 (README, Retention). The infrastructure policy refuses less."
  type        = number
  default     = 400

  validation {
    condition     = var.audit_retention_days >= 1 && floor(var.audit_retention_days) == var.audit_retention_days
    error_message = "audit_retention_days must be a whole number of days, at least 1."
  }
}

variable "audit_reader_arns" {
  description = "Principals that may assume the region's audit reader role (output audit_reader_role_arn) to read the shipped audit trail back: read-only, never write, delete or unlock. Empty: no reader role."
  type        = list(string)
  default     = []
}
