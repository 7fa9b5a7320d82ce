# Serving region eu-west-1 (config/regions.yaml). A new region is a copy of this file with its own values.
region             = "eu-west-1"
vpc_cidr           = "10.41.0.0/16"
availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
kubernetes_version = "1.35"
# The roles that administer the cluster (EKS access entries): set to your platform team's role(s).
# cluster_admin_principal_arns = ["arn:aws:iam::<account>:role/platform-admin"]
# Who may assume the read-only audit reader role (output audit_reader_role_arn): your auditors' roles.
# audit_reader_arns = ["arn:aws:iam::<auditor account>:role/soc2-auditor"]

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
    max_size       = 12
    desired_size   = 2
  }
  gpu-small = {
    kind        = "gpu"
    accelerator = "nvidia-l4"
    # A replica asks 2 GPUs (config/regions.yaml), 4 CPU, 16 GiB: g6.12xlarge (4 L4, 48 vCPU, 192 GiB)
    # holds two; g6.xlarge (1 GPU, 4 vCPU, 16 GiB before reservations) holds none.
    instance_types = ["g6.12xlarge"]
    min_size       = 2
    max_size       = 8
    desired_size   = 2
  }
}
