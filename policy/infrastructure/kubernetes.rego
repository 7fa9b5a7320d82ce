# METADATA
# title: Cluster isolation
# description: |
#   Checks the cluster parts of a Terraform plan (`terraform show -json`): the VPC CNI enforces network
#   policy, every node runs IMDSv2 with a hop limit of 1, the control plane's audit log is on, the
#   Kubernetes version is in EKS standard support, each GPU node group's instance types hold one serving
#   replica of its pool, and no policy lets a principal use a KMS key except through the service that
#   owns the key's data (kms:ViaService). Resources are read from `resource_changes` (deletes ignored);
#   IAM policies either as the JSON string of a role, user, group, managed or key policy, or, when that
#   string is known only after apply, as the statements of the `aws_iam_policy_document` it is built from.
package fairshare.infrastructure

clusters contains c if {
	some c in live
	c.type == "aws_eks_cluster"
}

cluster_label(c) := name if {
	name := c.change.after.name
	is_string(name)
} else := c.address

# A plan against an emulator (the region root's aws_endpoint set: every call goes there with fake
# credentials, so it cannot touch AWS) carries no EKS add-ons, since no emulator implements that API.
emulated if is_string(input.variables.aws_endpoint.value)

vpc_cni_addons(c) := {a |
	some a in live
	a.type == "aws_eks_addon"
	a.change.after.addon_name == "vpc-cni"
	a.change.after.cluster_name == c.change.after.name
}

# METADATA
# title: The VPC CNI enforces network policy
# description: Each EKS cluster needs the vpc-cni add-on with configuration_values enableNetworkPolicy "true"; without it every NetworkPolicy is ignored.
violations contains v if {
	some c in clusters
	count(vpc_cni_addons(c)) == 0
	not emulated
	v := {
		"rule": "network-policy-not-enforced",
		"subject": c.address,
		"field": "aws_eks_addon.vpc-cni",
		"message": sprintf("cluster %s has no vpc-cni add-on, so nothing enforces network policy: every NetworkPolicy the chart renders (runtimes reachable only from the gateway) would do nothing", [cluster_label(c)]),
	}
}

violations contains v if {
	some c in clusters
	some a in vpc_cni_addons(c)
	not network_policy_on(a)
	v := {
		"rule": "network-policy-not-enforced",
		"subject": a.address,
		"field": "configuration_values.enableNetworkPolicy",
		"message": sprintf("the vpc-cni add-on of cluster %s leaves network policy off (configuration_values needs {\"enableNetworkPolicy\": \"true\"}); every NetworkPolicy would do nothing", [cluster_label(c)]),
	}
}

network_policy_on(a) if {
	config := json.unmarshal(a.change.after.configuration_values)
	lower(sprintf("%v", [config.enableNetworkPolicy])) == "true"
}

launch_templates contains lt if {
	some lt in live
	lt.type == "aws_launch_template"
}

# METADATA
# title: Nodes run IMDSv2 with a hop limit of 1
# description: Each launch template needs metadata_options with http_tokens required and http_put_response_hop_limit 1, and each node group must launch from a launch template of the plan (named, so it is known at plan time); otherwise pods can reach the node role's credentials.
violations contains v if {
	some lt in launch_templates
	some problem in imds_problems(lt)
	v := {
		"rule": "imds-not-hardened",
		"subject": lt.address,
		"field": "metadata_options",
		"message": sprintf("launch template %s %s; pods on its nodes could take the node role's credentials from the instance metadata service (needs http_tokens = required and http_put_response_hop_limit = 1)", [object.get(lt.change.after, "name", lt.address), problem]),
	}
}

imds_problems(lt) := {"has no metadata_options"} if {
	count(object.get(lt.change.after, "metadata_options", [])) == 0
} else := {p |
	some m in lt.change.after.metadata_options
	some p in imds_option_problems(m)
}

imds_option_problems(m) := tokens_problem(m) | hop_problem(m)

tokens_problem(m) := set() if {
	m.http_tokens == "required"
} else := {sprintf("allows IMDSv1 (http_tokens %v)", [m.http_tokens])}

hop_problem(m) := set() if {
	m.http_put_response_hop_limit == 1
} else := {sprintf("lets a metadata response travel %v hops (http_put_response_hop_limit)", [m.http_put_response_hop_limit])}

violations contains v if {
	some ng in live
	ng.type == "aws_eks_node_group"
	not hardened_template(ng)
	v := {
		"rule": "imds-not-hardened",
		"subject": ng.address,
		"field": "launch_template",
		"message": sprintf("node group %s does not launch from a launch template of this plan (by name); EKS's default leaves the metadata hop limit at 2, so pods could take the node role's credentials", [ng.change.after.node_group_name]),
	}
}

hardened_template(ng) if {
	some ref in ng.change.after.launch_template
	some lt in launch_templates
	lt.change.after.name == ref.name
}

# METADATA
# title: The control plane's audit log is on
# description: Each EKS cluster needs "audit" in enabled_cluster_log_types.
violations contains v if {
	some c in clusters
	not "audit" in object.get(c.change.after, "enabled_cluster_log_types", [])
	v := {
		"rule": "audit-log-off",
		"subject": c.address,
		"field": "enabled_cluster_log_types",
		"message": sprintf("cluster %s does not send its audit log to CloudWatch (enabled_cluster_log_types lacks audit); who changed what through the Kubernetes API would not be recorded", [cluster_label(c)]),
	}
}

# METADATA
# title: The Kubernetes version is in EKS standard support
# description: A cluster's (or a node group's own) Kubernetes version must be in kubernetes_standard_support and not past its date.
violations contains v if {
	some rc in live
	rc.type in {"aws_eks_cluster", "aws_eks_node_group"}
	version := rc.change.after.version
	is_string(version)
	problem := version_problem(version)
	v := {
		"rule": "kubernetes-version-unsupported",
		"subject": rc.address,
		"field": "version",
		"message": sprintf("Kubernetes %s %s; EKS standard support covers %s", [version, problem, concat(", ", sort(supported_versions))]),
	}
}

supported_versions contains version if {
	some version, _ in kubernetes_standard_support
	not past(version)
}

version_problem(version) := "is not in EKS standard support (not in the policy's table)" if {
	not kubernetes_standard_support[version]
} else := sprintf("left EKS standard support on %s", [kubernetes_standard_support[version]]) if {
	past(version)
}

past(version) if time.parse_rfc3339_ns(sprintf("%sT23:59:59Z", [kubernetes_standard_support[version]])) < time.now_ns()

replica_tags := {"gpus": "fairshare:replica-gpus", "cpu": "fairshare:replica-cpu", "memory_mib": "fairshare:replica-memory-mib"}

# METADATA
# title: GPU node groups hold one replica of their pool
# description: Each instance type of a GPU node group must be in gpu_instance_types, and its allocatable GPUs, CPU and memory must hold the replica request the node group carries (tags fairshare:replica-gpus, -cpu, -memory-mib).
violations contains v if {
	some ng in live
	ng.type == "aws_eks_node_group"
	gpu_node_group(ng)
	some problem in fit_problems(ng)
	v := {
		"rule": "gpu-instance-too-small",
		"subject": ng.address,
		"field": "instance_types",
		"message": sprintf("GPU node group %s: %s", [ng.change.after.node_group_name, problem]),
	}
}

replica_request(ng) := {k: to_number(ng.change.after.tags[tag]) | some k, tag in replica_tags}

fit_problems(ng) := {"carries no replica request (tags fairshare:replica-gpus, fairshare:replica-cpu, fairshare:replica-memory-mib), so whether a replica fits cannot be told"} if {
	count(replica_request(ng)) < count(replica_tags)
} else := {p |
	request := replica_request(ng)
	some t in ng.change.after.instance_types
	some p in instance_problems(t, request)
}

instance_problems(t, request) := {sprintf("instance type %s is not in the policy's GPU instance table (gpu_instance_types), so whether a replica fits cannot be told", [t])} if {
	not gpu_instance_types[t]
} else := {p |
	a := allocatable(t)
	want := object.union(request, {"cpu_m": 1000 * request.cpu})
	short := [sprintf("%v %s (has %v)", [want[k], unit, a[k]]) |
		some [k, unit] in [["gpus", "GPUs"], ["cpu_m", "millicores"], ["memory_mib", "MiB"]]
		want[k] > a[k]
	]
	count(short) > 0
	p := sprintf("instance type %s cannot hold one replica: it asks %s of what a node offers after EKS's reservations", [t, concat(", ", short)])
}
