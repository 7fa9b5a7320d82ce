output "node_role_arn" {
  description = "IAM role the nodes run as."
  value       = aws_iam_role.node.arn
}

output "node_groups" {
  description = "Per pool: node group name, kind, accelerator, taint key (null when untainted) and scaling bounds."
  value = {
    for name, ng in aws_eks_node_group.this : name => {
      node_group_name = ng.node_group_name
      kind            = var.pools[name].kind
      accelerator     = var.pools[name].accelerator
      taint_key       = var.pools[name].kind == "gpu" ? var.gpu_taint_key : null
      min_size        = var.pools[name].min_size
      max_size        = var.pools[name].max_size
    }
  }
}

output "launch_template_names" {
  description = "Per pool, the launch template its nodes start from (IMDSv2 only, hop limit 1, encrypted gp3 disk)."
  value       = { for name, lt in aws_launch_template.this : name => lt.name }
}

output "autoscaler_discovery_tags" {
  description = "Tags every node group (and, by EKS, its Auto Scaling group) carries for Cluster Autoscaler's auto-discovery: pass their keys to its --node-group-auto-discovery=asg:tag=... (helm/fairshare-cluster-addons)."
  value       = local.autoscaler_discovery_tags
}
