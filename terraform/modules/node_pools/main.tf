locals {
  # GPU nodes need the NVIDIA driver image; others run the standard AL2023 image.
  default_ami = { system = "AL2023_x86_64_STANDARD", cpu = "AL2023_x86_64_STANDARD", gpu = "AL2023_x86_64_NVIDIA" }
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

resource "aws_eks_node_group" "this" {
  for_each = var.pools

  cluster_name    = var.cluster_name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = each.value.instance_types
  ami_type        = coalesce(each.value.ami_type, local.default_ami[each.value.kind])
  capacity_type   = each.value.capacity_type
  disk_size       = each.value.disk_size_gb

  scaling_config {
    min_size     = each.value.min_size
    max_size     = each.value.max_size
    desired_size = each.value.desired_size
  }

  labels = merge(each.value.labels, {
    "fairshare.io/pool"        = each.key
    "fairshare.io/pool-kind"   = each.value.kind
    "fairshare.io/accelerator" = each.value.accelerator
  })

  # Only pods that tolerate this taint (the serving runtimes of a GPU pool) may use a GPU node.
  dynamic "taint" {
    for_each = each.value.kind == "gpu" ? [1] : []
    content {
      key    = var.gpu_taint_key
      value  = "present"
      effect = "NO_SCHEDULE"
    }
  }

  tags = merge(var.tags, { "fairshare:pool" = each.key, "fairshare:pool-kind" = each.value.kind })

  lifecycle {
    # The cluster autoscaler owns the current size within [min_size, max_size].
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}
