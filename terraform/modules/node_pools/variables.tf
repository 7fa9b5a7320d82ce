variable "cluster_name" {
  description = "Name of the EKS cluster the node groups join."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the nodes run in."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "gpu_taint_key" {
  description = "Taint key every GPU node carries, so only pods that tolerate it (the serving runtimes) land on GPUs."
  type        = string
  default     = "nvidia.com/gpu"
}

variable "pools" {
  description = <<-EOT
    Node groups keyed by pool name (the pool names in config/regions.yaml, plus one `system` pool).
    kind: "system" (control plane, Envoy, add-ons), "cpu" (CPU serving pools) or "gpu" (tainted GPU serving pools).
    accelerator: what the pool serves on, e.g. "nvidia-l4" (becomes the fairshare.io/accelerator label).
    min_size/max_size bound the autoscaler; desired_size is only the starting size.
    replica_request: what one serving replica asks (gpus, cpu cores, memory_mib); tagged on the node group so
    policy/infrastructure can check each instance type holds it. Required for gpu pools.
  EOT
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
    replica_request = optional(object({
      gpus       = number
      cpu        = number
      memory_mib = number
    }))
  }))

  validation {
    condition     = alltrue([for n, p in var.pools : can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", n))])
    error_message = "pool names must be lowercase letters, digits and dashes (2-40 characters)."
  }

  validation {
    condition     = alltrue([for p in values(var.pools) : contains(["system", "cpu", "gpu"], p.kind)])
    error_message = "every pool's kind must be one of system, cpu, gpu."
  }

  validation {
    condition     = length([for p in values(var.pools) : p if p.kind == "system"]) == 1
    error_message = "exactly one pool must be the system pool (kind = \"system\")."
  }

  validation {
    condition     = alltrue([for p in values(var.pools) : p.min_size >= 0 && p.min_size <= p.desired_size && p.desired_size <= p.max_size && p.max_size >= 1])
    error_message = "every pool needs 0 <= min_size <= desired_size <= max_size and max_size >= 1."
  }

  validation {
    condition     = alltrue([for p in values(var.pools) : length(p.instance_types) >= 1])
    error_message = "every pool needs at least one instance type."
  }

  validation {
    condition     = alltrue([for p in values(var.pools) : p.kind != "gpu" || p.accelerator != "cpu"])
    error_message = "a gpu pool must name its accelerator (e.g. nvidia-l4)."
  }

  validation {
    condition     = alltrue([for p in values(var.pools) : p.kind != "gpu" || p.replica_request != null])
    error_message = "a gpu pool must give its replica_request (gpus, cpu, memory_mib), so the plan can be checked against its instance types."
  }

  validation {
    condition     = alltrue([for p in values(var.pools) : contains(["ON_DEMAND", "SPOT"], p.capacity_type)])
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

