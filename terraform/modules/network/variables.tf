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
  description = "Create one NAT gateway so private nodes can pull images and models; false for fully private regions with VPC endpoints."
  type        = bool
  default     = true
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
