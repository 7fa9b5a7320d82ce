# Serving region us-east-1 (config/regions.yaml). A new region is a copy of this file with its own values.
region             = "us-east-1"
vpc_cidr           = "10.40.0.0/16"
availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
kubernetes_version = "1.31"

node_pools = {
  system = {
    kind           = "system"
    instance_types = ["m6i.large"]
    min_size       = 2
    max_size       = 4
    desired_size   = 2
  }
  cpu-general = {
    kind           = "cpu"
    instance_types = ["c6i.2xlarge"]
    min_size       = 2
    max_size       = 20
    desired_size   = 2
  }
  gpu-small = {
    kind           = "gpu"
    accelerator    = "nvidia-l4"
    instance_types = ["g6.xlarge"]
    min_size       = 2
    max_size       = 16
    desired_size   = 2
  }
}
