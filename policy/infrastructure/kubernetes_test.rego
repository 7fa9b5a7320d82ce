package fairshare.infrastructure_test

# Tests of kubernetes.rego. The same package as infrastructure_test.rego, so they share its builders
# (change, node_group, hardened_lt, plan, rules); the policy is referred to as data.fairshare.infrastructure
# (see there why not through an import).

# The support table is pinned in every test, so none changes meaning as dates pass.
support := {"1.34": "2000-01-31", "1.35": "2200-12-31"}

eks := change("module.cluster.aws_eks_cluster.this", "aws_eks_cluster", {"name": "fairshare-eu", "version": "1.35", "enabled_cluster_log_types": ["api", "audit", "authenticator"]})

vpc_cni(config) := change("module.cluster.aws_eks_addon.this[\"vpc-cni\"]", "aws_eks_addon", {"addon_name": "vpc-cni", "cluster_name": "fairshare-eu", "configuration_values": config})

network_policy_on := json.marshal({"enableNetworkPolicy": "true"})

cluster_with(after) := object.union(eks, {"change": {"after": after}})

# A GPU node group of g6.12xlarge nodes (4 GPUs, 48 vCPU, 192 GiB) whose pool asks `request` per replica.
gpu_group(types, request) := node_group("gpu", {
	"ami_type": "BOTTLEROCKET_x86_64_NVIDIA",
	"instance_types": types,
	"taint": gpu_taint,
	"tags": {"fairshare:replica-gpus": request[0], "fairshare:replica-cpu": request[1], "fairshare:replica-memory-mib": request[2]},
})

production_request := ["1", "4", "16384"]

violations_of(changes) := vs if {
	vs := data.fairshare.infrastructure.violations with input as plan(changes)
		with data.fairshare.infrastructure.kubernetes_standard_support as support
}

rules_of(changes) := {v.rule | some v in violations_of(changes)}

test_a_hardened_cluster_passes if {
	rules_of([eks, vpc_cni(network_policy_on), gpu_group(["g6.12xlarge"], production_request)]) == set()
}

# network-policy-not-enforced

test_a_cluster_without_the_vpc_cni_addon_is_denied if {
	vs := violations_of([eks])
	count(vs) == 1
	some v in vs
	v.rule == "network-policy-not-enforced"
	v.subject == "module.cluster.aws_eks_cluster.this"
	contains(v.message, "fairshare-eu")
}

test_a_vpc_cni_addon_with_network_policy_off_is_denied if {
	vs := violations_of([eks, vpc_cni(json.marshal({"enableNetworkPolicy": "false"}))])
	count(vs) == 1
	some v in vs
	v.rule == "network-policy-not-enforced"
	v.field == "configuration_values.enableNetworkPolicy"
}

test_a_vpc_cni_addon_without_configuration_is_denied if {
	rules_of([eks, vpc_cni("{}")]) == {"network-policy-not-enforced"}
}

test_the_addon_of_another_cluster_does_not_count if {
	other := object.union(vpc_cni(network_policy_on), {"change": {"after": {"cluster_name": "other"}}})
	rules_of([eks, other]) == {"network-policy-not-enforced"}
}

test_a_plan_against_an_emulator_needs_no_addon if {
	p := object.union(plan([eks]), {"variables": {"aws_endpoint": {"value": "http://127.0.0.1:5000"}}})
	vs := data.fairshare.infrastructure.violations with input as p
		with data.fairshare.infrastructure.kubernetes_standard_support as support
	vs == set()
}

test_a_cluster_without_a_known_name_is_named_by_its_address if {
	unnamed := cluster_with({"name": null})
	some v in violations_of([unnamed])
	v.rule == "network-policy-not-enforced"
	contains(v.message, "module.cluster.aws_eks_cluster.this")
}

# imds-not-hardened

lt(options) := change("module.node_pools.aws_launch_template.this", "aws_launch_template", {"name": "lt", "metadata_options": options})

test_imdsv1_is_denied if {
	vs := violations_of([eks, vpc_cni(network_policy_on), lt([{"http_tokens": "optional", "http_put_response_hop_limit": 1}])])
	count(vs) == 1
	some v in vs
	v.rule == "imds-not-hardened"
	contains(v.message, "IMDSv1")
}

test_a_hop_limit_of_2_is_denied if {
	vs := violations_of([eks, vpc_cni(network_policy_on), lt([{"http_tokens": "required", "http_put_response_hop_limit": 2}])])
	count(vs) == 1
	some v in vs
	v.rule == "imds-not-hardened"
	contains(v.message, "2 hops")
}

test_a_launch_template_without_metadata_options_is_denied if {
	bare := change("module.node_pools.aws_launch_template.bare", "aws_launch_template", {"name": "bare"})
	some v in violations_of([eks, vpc_cni(network_policy_on), bare])
	v.rule == "imds-not-hardened"
	contains(v.message, "has no metadata_options")
}

test_a_node_group_without_a_launch_template_is_denied if {
	vs := violations_of([eks, vpc_cni(network_policy_on), node_group("system", {"instance_types": ["m6i.large"], "launch_template": []})])
	count(vs) == 1
	some v in vs
	v.rule == "imds-not-hardened"
	v.field == "launch_template"
}

test_a_node_group_on_a_template_outside_the_plan_is_denied if {
	rules_of([eks, vpc_cni(network_policy_on), node_group("system", {"instance_types": ["m6i.large"], "launch_template": [{"name": "elsewhere"}]})]) == {"imds-not-hardened"}
}

# audit-log-off

test_a_cluster_without_the_audit_log_is_denied if {
	vs := violations_of([cluster_with({"enabled_cluster_log_types": ["api"]}), vpc_cni(network_policy_on)])
	count(vs) == 1
	some v in vs
	v.rule == "audit-log-off"
	v.field == "enabled_cluster_log_types"
}

test_a_cluster_without_any_log_types_is_denied if {
	bare := change("module.cluster.aws_eks_cluster.this", "aws_eks_cluster", {"name": "fairshare-eu", "version": "1.35"})
	rules_of([bare, vpc_cni(network_policy_on)]) == {"audit-log-off"}
}

# kubernetes-version-unsupported

test_a_version_outside_the_table_is_denied if {
	vs := violations_of([cluster_with({"version": "1.31"}), vpc_cni(network_policy_on)])
	count(vs) == 1
	some v in vs
	v.rule == "kubernetes-version-unsupported"
	contains(v.message, "not in EKS standard support")
	contains(v.message, "covers 1.35")
}

test_a_version_past_its_date_is_denied if {
	vs := violations_of([cluster_with({"version": "1.34"}), vpc_cni(network_policy_on)])
	count(vs) == 1
	some v in vs
	v.rule == "kubernetes-version-unsupported"
	contains(v.message, "left EKS standard support on 2000-01-31")
}

test_a_node_group_on_an_old_version_is_denied if {
	old := node_group("system", {"instance_types": ["m6i.large"], "version": "1.31"})
	some v in violations_of([eks, vpc_cni(network_policy_on), old])
	v.rule == "kubernetes-version-unsupported"
	v.subject == "module.node_pools.aws_eks_node_group.this[\"system\"]"
}

test_the_repos_table_has_a_version_in_support_today if {
	count(data.fairshare.infrastructure.supported_versions) > 0
}

# gpu-instance-too-small

test_the_old_gpu_pool_on_g6_xlarge_is_denied if {
	# 2 GPUs, 4 CPU and 16 GiB per replica: more than a g6.xlarge has, let alone offers after reservations.
	vs := violations_of([eks, vpc_cni(network_policy_on), gpu_group(["g6.xlarge"], ["2", "4", "16384"])])
	count(vs) == 1
	some v in vs
	v.rule == "gpu-instance-too-small"
	contains(v.message, "g6.xlarge cannot hold one replica")
	contains(v.message, "2 GPUs (has 1)")
	contains(v.message, "4000 millicores")
	contains(v.message, "16384 MiB")
}

test_a_replica_that_fills_a_node_to_the_core_does_not_fit if {
	# 1 GPU and 4 CPU on g6.xlarge: the GPU fits, the CPU does not (EKS and the node's DaemonSets take a share).
	vs := violations_of([eks, vpc_cni(network_policy_on), gpu_group(["g6.xlarge"], ["1", "4", "1024"])])
	some v in vs
	v.rule == "gpu-instance-too-small"
	not contains(v.message, "GPUs")
	contains(v.message, "millicores")
}

test_every_listed_instance_type_must_fit if {
	some v in violations_of([eks, vpc_cni(network_policy_on), gpu_group(["g6.12xlarge", "g6.xlarge"], production_request)])
	v.rule == "gpu-instance-too-small"
	contains(v.message, "g6.xlarge")
	not contains(v.message, "g6.12xlarge")
}

test_an_instance_type_outside_the_table_is_denied if {
	some v in violations_of([eks, vpc_cni(network_policy_on), gpu_group(["g9.xlarge"], production_request)])
	v.rule == "gpu-instance-too-small"
	contains(v.message, "not in the policy's GPU instance table")
}

test_a_gpu_node_group_without_a_replica_request_is_denied if {
	# Built whole: node_group's object.union would merge the default request back into the tags.
	untagged := change("module.node_pools.aws_eks_node_group.this[\"gpu\"]", "aws_eks_node_group", {
		"node_group_name": "gpu",
		"launch_template": [{"name": "lt"}],
		"ami_type": "BOTTLEROCKET_x86_64_NVIDIA",
		"instance_types": ["g6.12xlarge"],
		"taint": gpu_taint,
		"tags": {"fairshare:replica-gpus": "1"},
	})
	some v in violations_of([eks, vpc_cni(network_policy_on), untagged])
	v.rule == "gpu-instance-too-small"
	contains(v.message, "carries no replica request")
}

test_cpu_node_groups_need_no_replica_request if {
	cpu := change("module.node_pools.aws_eks_node_group.this[\"system\"]", "aws_eks_node_group", {"node_group_name": "system", "launch_template": [{"name": "lt"}], "instance_types": ["m6i.large"]})
	rules_of([eks, vpc_cni(network_policy_on), cpu]) == set()
}
