variable "name" {
  description = "Name prefix for every network resource (e.g. fairshare-eu-west-1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}$", var.name))
    error_message = "name must be 2-41 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC; subnets are carved out of it (a /16 leaves room for large pod IP ranges)."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be a valid IPv4 CIDR no smaller than /20."
  }
}

variable "availability_zones" {
  description = "Availability zones to spread subnets over; one private and one public subnet per zone."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 6
    error_message = "availability_zones needs 2 to 6 zones: EKS requires subnets in at least two."
  }

  validation {
    condition     = length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must not repeat a zone."
  }
}

variable "enable_nat_gateway" {
  description = "Give private nodes internet egress through NAT; false for fully private regions (the VPC endpoints still serve image pulls, model pulls and STS)."
  type        = bool
  default     = true
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per zone, each zone's private subnet routed through its own (default: losing a zone stops only its egress). False: one NAT gateway in the first zone, cheaper, a single point of failure."
  type        = bool
  default     = true
}

variable "enable_vpc_endpoints" {
  description = "Create the S3 gateway endpoint and the interface endpoints (interface_endpoints), so image pulls, model pulls and credential refresh do not depend on NAT."
  type        = bool
  default     = true
}

variable "interface_endpoints" {
  description = "AWS services reached through interface endpoints in the private subnets (com.amazonaws.<region>.<service>)."
  type        = list(string)
  default     = ["sts", "ecr.api", "ecr.dkr"]

  validation {
    condition     = alltrue([for s in var.interface_endpoints : can(regex("^[a-z0-9.-]+$", s))])
    error_message = "interface_endpoints must be service names such as sts or ecr.dkr."
  }
}

variable "cluster_name" {
  description = "EKS cluster name the subnets are tagged for, so load balancers find them."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
