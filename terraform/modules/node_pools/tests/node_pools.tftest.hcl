mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

variables {
  cluster_name = "fairshare-eu-west-1"
  subnet_ids   = ["subnet-a", "subnet-b"]
  pools = {
    system      = { kind = "system", instance_types = ["m6i.large"], min_size = 2, max_size = 4, desired_size = 2 }
    cpu-general = { kind = "cpu", instance_types = ["c6i.2xlarge"], min_size = 1, max_size = 10, desired_size = 2 }
    gpu-small   = { kind = "gpu", accelerator = "nvidia-l4", instance_types = ["g6.xlarge"], min_size = 0, max_size = 8, desired_size = 1, replica_request = { gpus = 1, cpu = 2, memory_mib = 8192 } }
  }
}

run "gpu_pools_are_tainted_and_labelled_the_others_not" {
  command = plan

  assert {
    condition     = one(aws_eks_node_group.this["gpu-small"].taint).key == "nvidia.com/gpu" && one(aws_eks_node_group.this["gpu-small"].taint).effect == "NO_SCHEDULE"
    error_message = "a GPU pool must carry the nvidia.com/gpu NoSchedule taint"
  }

  assert {
    condition     = length(aws_eks_node_group.this["system"].taint) == 0 && length(aws_eks_node_group.this["cpu-general"].taint) == 0
    error_message = "system and CPU pools take any pod: no taint"
  }

  assert {
    condition     = aws_eks_node_group.this["gpu-small"].labels["fairshare.io/accelerator"] == "nvidia-l4" && aws_eks_node_group.this["gpu-small"].labels["fairshare.io/pool"] == "gpu-small"
    error_message = "pools are labelled with their name and accelerator"
  }

  assert {
    condition     = aws_eks_node_group.this["gpu-small"].ami_type == "BOTTLEROCKET_x86_64_NVIDIA" && aws_eks_node_group.this["system"].ami_type == "AL2023_x86_64_STANDARD"
    error_message = "GPU pools run Bottlerocket's NVIDIA variant (driver and device plugin in the image)"
  }

  assert {
    condition     = alltrue([for lt in aws_launch_template.this : one(lt.metadata_options).http_tokens == "required" && one(lt.metadata_options).http_put_response_hop_limit == 1])
    error_message = "every node runs IMDSv2 only with a hop limit of 1, so pods cannot reach the node role's credentials"
  }

  assert {
    condition     = alltrue([for k, ng in aws_eks_node_group.this : one(ng.launch_template).name == "fairshare-eu-west-1-${k}"])
    error_message = "every node group launches from its pool's template"
  }

  assert {
    condition     = one(aws_launch_template.this["gpu-small"].block_device_mappings).device_name == "/dev/xvdb" && one(aws_launch_template.this["system"].block_device_mappings).device_name == "/dev/xvda"
    error_message = "the disk size goes to Bottlerocket's data volume, and to AL2023's only volume"
  }

  assert {
    condition     = aws_eks_node_group.this["gpu-small"].tags["fairshare:replica-gpus"] == "1" && aws_eks_node_group.this["gpu-small"].tags["fairshare:replica-memory-mib"] == "8192"
    error_message = "a GPU pool carries its per-replica request for the infrastructure policy"
  }

  assert {
    condition     = aws_eks_node_group.this["gpu-small"].scaling_config[0].min_size == 0 && aws_eks_node_group.this["gpu-small"].scaling_config[0].max_size == 8
    error_message = "scaling bounds come from the pool"
  }

  assert {
    condition = alltrue([for ng in aws_eks_node_group.this : ng.tags["k8s.io/cluster-autoscaler/enabled"] == "true" && ng.tags["k8s.io/cluster-autoscaler/fairshare-eu-west-1"] == "owned"]) && output.autoscaler_discovery_tags == {
      "k8s.io/cluster-autoscaler/enabled"             = "true"
      "k8s.io/cluster-autoscaler/fairshare-eu-west-1" = "owned"
    }
    error_message = "every node group carries Cluster Autoscaler's discovery tags (the resize permission's <cluster> = owned among them), and the output gives the autoscaler exactly those"
  }
}

run "gpu_nodes_carry_the_autoscalers_accelerator_label" {
  command = plan

  assert {
    condition     = aws_eks_node_group.this["gpu-small"].labels["k8s.amazonaws.com/accelerator"] == "nvidia-l4"
    error_message = "a GPU pool's nodes carry k8s.amazonaws.com/accelerator = its accelerator, so Cluster Autoscaler waits for their GPUs instead of scaling up twice"
  }

  assert {
    condition     = !contains(keys(aws_eks_node_group.this["system"].labels), "k8s.amazonaws.com/accelerator") && !contains(keys(aws_eks_node_group.this["cpu-general"].labels), "k8s.amazonaws.com/accelerator")
    error_message = "only GPU pools carry the accelerator label (the autoscaler would wait forever for GPUs on a CPU node)"
  }
}

run "pools_that_scale_from_zero_carry_node_templates" {
  command = plan

  variables {
    pools = {
      system      = { kind = "system", instance_types = ["m6i.large"], min_size = 2, max_size = 4, desired_size = 2 }
      cpu-general = { kind = "cpu", instance_types = ["c6i.2xlarge"], min_size = 0, max_size = 10, desired_size = 1, labels = { team = "ml" } }
      cpu-steady  = { kind = "cpu", instance_types = ["c6i.2xlarge"], min_size = 1, max_size = 10, desired_size = 1 }
      gpu-small   = { kind = "gpu", accelerator = "nvidia-l4", instance_types = ["g6.xlarge"], min_size = 0, max_size = 8, desired_size = 0, replica_request = { gpus = 1, cpu = 2, memory_mib = 8192 } }
    }
  }

  assert {
    condition = { for k, t in aws_autoscaling_group_tag.node_template : one(t.tag).key => one(t.tag).value if startswith(k, "gpu-small:") } == {
      "k8s.io/cluster-autoscaler/node-template/label/fairshare.io/pool"             = "gpu-small"
      "k8s.io/cluster-autoscaler/node-template/label/fairshare.io/pool-kind"        = "gpu"
      "k8s.io/cluster-autoscaler/node-template/label/fairshare.io/accelerator"      = "nvidia-l4"
      "k8s.io/cluster-autoscaler/node-template/label/k8s.amazonaws.com/accelerator" = "nvidia-l4"
      "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"                = "present:NoSchedule"
    }
    error_message = "a GPU pool at min_size 0 tells the autoscaler its nodes' labels and taint (value:effect), so pods that select the pool and tolerate the taint scale it up from zero"
  }

  assert {
    condition = { for k, t in aws_autoscaling_group_tag.node_template : one(t.tag).key => one(t.tag).value if startswith(k, "cpu-general:") } == {
      "k8s.io/cluster-autoscaler/node-template/label/fairshare.io/pool"        = "cpu-general"
      "k8s.io/cluster-autoscaler/node-template/label/fairshare.io/pool-kind"   = "cpu"
      "k8s.io/cluster-autoscaler/node-template/label/fairshare.io/accelerator" = "cpu"
      "k8s.io/cluster-autoscaler/node-template/label/team"                     = "ml"
    }
    error_message = "a CPU pool at min_size 0 carries its labels (the pool's own among them) and no taint"
  }

  assert {
    condition     = length([for k, t in aws_autoscaling_group_tag.node_template : k if startswith(k, "cpu-steady:") || startswith(k, "system:")]) == 0
    error_message = "pools that always keep a node need no node template: the autoscaler copies a running node"
  }

  assert {
    condition     = alltrue([for t in aws_autoscaling_group_tag.node_template : one(t.tag).propagate_at_launch == false])
    error_message = "node-template tags are for the autoscaler, not copied to instances"
  }
}

run "three_gpu_pools" {
  command = plan

  variables {
    pools = {
      system = { kind = "system", instance_types = ["m6i.large"], min_size = 2, max_size = 4, desired_size = 2 }
      gpu-a  = { kind = "gpu", accelerator = "nvidia-l4", instance_types = ["g6.xlarge"], min_size = 0, max_size = 4, desired_size = 0, replica_request = { gpus = 1, cpu = 2, memory_mib = 8192 } }
      gpu-b  = { kind = "gpu", accelerator = "nvidia-a10g", instance_types = ["g5.xlarge"], min_size = 0, max_size = 4, desired_size = 0, replica_request = { gpus = 1, cpu = 2, memory_mib = 8192 } }
      gpu-c  = { kind = "gpu", accelerator = "nvidia-h100", instance_types = ["p5.48xlarge"], min_size = 0, max_size = 2, desired_size = 0, replica_request = { gpus = 1, cpu = 2, memory_mib = 8192 } }
    }
  }

  assert {
    condition     = length([for k, ng in aws_eks_node_group.this : k if length(ng.taint) == 1]) == 3
    error_message = "every GPU pool is tainted"
  }
}

run "scaling_bounds_out_of_order_are_refused" {
  command = plan

  variables {
    pools = {
      system = { kind = "system", instance_types = ["m6i.large"], min_size = 3, max_size = 2, desired_size = 2 }
    }
  }

  expect_failures = [var.pools]
}

run "a_gpu_pool_without_accelerator_is_refused" {
  command = plan

  variables {
    pools = {
      system = { kind = "system", instance_types = ["m6i.large"], min_size = 1, max_size = 2, desired_size = 1 }
      gpu    = { kind = "gpu", instance_types = ["g6.xlarge"], min_size = 0, max_size = 2, desired_size = 0 }
    }
  }

  expect_failures = [var.pools]
}

run "no_system_pool_is_refused" {
  command = plan

  variables {
    pools = {
      cpu = { kind = "cpu", instance_types = ["c6i.large"], min_size = 1, max_size = 2, desired_size = 1 }
    }
  }

  expect_failures = [var.pools]
}

run "a_gpu_pool_without_its_replica_request_is_refused" {
  command = plan

  variables {
    pools = {
      system = { kind = "system", instance_types = ["m6i.large"], min_size = 2, max_size = 4, desired_size = 2 }
      gpu    = { kind = "gpu", accelerator = "nvidia-l4", instance_types = ["g6.12xlarge"], min_size = 0, max_size = 4, desired_size = 0 }
    }
  }

  expect_failures = [var.pools]
}
