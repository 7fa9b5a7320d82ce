locals {
  # GPU nodes run Bottlerocket's NVIDIA variant: driver, container toolkit and the NVIDIA Kubernetes device
  # plugin are part of the OS image, so `nvidia.com/gpu` is advertised as soon as a node joins, with nothing
  # to install or upgrade beside the node. The others run the standard AL2023 image.
  default_ami = { system = "AL2023_x86_64_STANDARD", cpu = "AL2023_x86_64_STANDARD", gpu = "BOTTLEROCKET_x86_64_NVIDIA" }
  ami_type    = { for name, p in var.pools : name => coalesce(p.ami_type, local.default_ami[p.kind]) }
  # Bottlerocket keeps the OS on /dev/xvda and containers and images on /dev/xvdb; AL2023 has one volume.
  data_device = { for name, t in local.ami_type : name => startswith(t, "BOTTLEROCKET") ? "/dev/xvdb" : "/dev/xvda" }
  # What Cluster Autoscaler discovers the groups it may resize by (its --node-group-auto-discovery tags, from
  # the autoscaler_discovery_tags output) and what its IAM role may resize (the <cluster> = owned tag). EKS
  # puts these on each managed node group's Auto Scaling group; they are on the node groups too, so a plan
  # shows what the autoscaler will find.
  autoscaler_discovery_tags = {
    "k8s.io/cluster-autoscaler/enabled"             = "true"
    "k8s.io/cluster-autoscaler/${var.cluster_name}" = "owned"
  }
  # Each pool's node labels. GPU pools also carry k8s.amazonaws.com/accelerator, the label Cluster Autoscaler
  # (AWS) reads as "this node has GPUs": until the device plugin advertises nvidia.com/gpu on a node that just
  # joined, the autoscaler counts its GPUs as coming instead of scaling up a second node for the same pods.
  labels = { for name, p in var.pools : name => merge(p.labels, {
    "fairshare.io/pool"        = name
    "fairshare.io/pool-kind"   = p.kind
    "fairshare.io/accelerator" = p.accelerator
  }, p.kind == "gpu" ? { "k8s.amazonaws.com/accelerator" = p.accelerator } : {}) }
  # Taints as Cluster Autoscaler's node-template tags write them: <key> = <value>:<effect>.
  taints = { for name, p in var.pools : name => p.kind == "gpu" ? { (var.gpu_taint_key) = "present:NoSchedule" } : {} }
  # A pool that may shrink to zero has no node for the autoscaler to copy labels and taints from, so it reads
  # them from its Auto Scaling group's node-template tags; without them it would never scale the pool up for
  # pods that select the pool or tolerate its taint. EKS copies no node group tag to the group: set directly.
  template_prefix = "k8s.io/cluster-autoscaler/node-template"
  node_template_tags = merge([for name, p in var.pools : p.min_size > 0 ? {} : merge(
    { for k, v in local.labels[name] : "${name}:label/${k}" => { pool = name, key = "${local.template_prefix}/label/${k}", value = v } },
    { for k, v in local.taints[name] : "${name}:taint/${k}" => { pool = name, key = "${local.template_prefix}/taint/${k}", value = v } },
  )]...)
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.cluster_name}-node"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
  ])
  role       = aws_iam_role.node.name
  policy_arn = each.value
}

# Every pool launches from its own template, so the instance metadata service is IMDSv2 only with a hop
# limit of 1: a pod (one hop further than the node) cannot reach it and so cannot take the node role's
# credentials. Node groups without a template get EKS's default hop limit of 2.
resource "aws_launch_template" "this" {
  for_each = var.pools

  name                   = "${var.cluster_name}-${each.key}" # known at plan: the policy ties node groups to it
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = local.data_device[each.key]
    ebs {
      volume_size           = each.value.disk_size_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { "fairshare:pool" = each.key, "fairshare:pool-kind" = each.value.kind })
  }

  tags = merge(var.tags, { "fairshare:pool" = each.key })
}

resource "aws_eks_node_group" "this" {
  for_each = var.pools

  cluster_name    = var.cluster_name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = each.value.instance_types
  ami_type        = local.ami_type[each.key]
  capacity_type   = each.value.capacity_type

  # The disk size lives in the template: EKS refuses disk_size beside a launch template.
  launch_template {
    name    = aws_launch_template.this[each.key].name
    version = aws_launch_template.this[each.key].latest_version
  }

  scaling_config {
    min_size     = each.value.min_size
    max_size     = each.value.max_size
    desired_size = each.value.desired_size
  }

  labels = local.labels[each.key]

  # Only pods that tolerate this taint (the serving runtimes of a GPU pool) may use a GPU node.
  dynamic "taint" {
    for_each = each.value.kind == "gpu" ? [1] : []
    content {
      key    = var.gpu_taint_key
      value  = "present"
      effect = "NO_SCHEDULE"
    }
  }

  # What one serving replica of the pool asks for (GPUs, CPU, memory): policy/infrastructure checks that
  # each instance type's allocatable capacity holds it. Cluster Autoscaler discovers the group by the
  # k8s.io/cluster-autoscaler tags (local.autoscaler_discovery_tags).
  tags = merge(var.tags, local.autoscaler_discovery_tags, { "fairshare:pool" = each.key, "fairshare:pool-kind" = each.value.kind },
    each.value.replica_request == null ? {} : {
      "fairshare:replica-gpus"       = tostring(each.value.replica_request.gpus)
      "fairshare:replica-cpu"        = tostring(each.value.replica_request.cpu)
      "fairshare:replica-memory-mib" = tostring(each.value.replica_request.memory_mib)
  })

  lifecycle {
    # The cluster autoscaler owns the current size within [min_size, max_size].
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# The node-template tags of pools with min_size = 0 (local.node_template_tags), on the group EKS created.
resource "aws_autoscaling_group_tag" "node_template" {
  for_each = local.node_template_tags

  autoscaling_group_name = one(one(aws_eks_node_group.this[each.value.pool].resources).autoscaling_groups).name

  tag {
    key                 = each.value.key
    value               = each.value.value
    propagate_at_launch = false
  }
}
