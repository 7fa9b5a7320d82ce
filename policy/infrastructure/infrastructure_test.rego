package fairshare.infrastructure_test

# The policy is referred to as data.fairshare.infrastructure, never through `import data.fairshare.infrastructure`:
# regorus evaluates a rule reached through such an import wrongly when the package spans several files
# (docs/policy.md, "regorus and packages split over files").

# Builders for the parts of a `terraform show -json` plan the policy reads.
change(address, type, after) := {"address": address, "type": type, "change": {"actions": ["create"], "after": after, "after_unknown": {}}}

bucket := change("module.model_store.aws_s3_bucket.this", "aws_s3_bucket", {"bucket": "models-eu"})

sse(algorithm, key) := change("module.model_store.aws_s3_bucket_server_side_encryption_configuration.this", "aws_s3_bucket_server_side_encryption_configuration", {
	"bucket": "models-eu",
	"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": algorithm, "kms_master_key_id": key}]}],
})

# A key created in the same plan: its ARN is unknown until apply.
sse_new_key := object.union(sse("aws:kms", null), {"change": {
	"actions": ["create"],
	"after": sse("aws:kms", null).change.after,
	"after_unknown": {"rule": [{"apply_server_side_encryption_by_default": [{"kms_master_key_id": true}]}]},
}})

versioning(status) := change("module.model_store.aws_s3_bucket_versioning.this", "aws_s3_bucket_versioning", {"bucket": "models-eu", "versioning_configuration": [{"status": status}]})

pab(value) := change("module.model_store.aws_s3_bucket_public_access_block.this", "aws_s3_bucket_public_access_block", {
	"bucket": "models-eu",
	"block_public_acls": true,
	"block_public_policy": value,
	"ignore_public_acls": true,
	"restrict_public_buckets": true,
})

secret(tenant, allowed) := change(sprintf("module.tenant_secrets.aws_secretsmanager_secret.seed[\"%s\"]", [tenant]), "aws_secretsmanager_secret", {"name": tenant, "tags": {"fairshare:tenant": tenant, "fairshare:allowed-regions": allowed}})

# Every node group launches from the hardened template, and GPU ones carry a replica request that fits.
node_group(name, after) := change(sprintf("module.node_pools.aws_eks_node_group.this[\"%s\"]", [name]), "aws_eks_node_group", object.union({
	"node_group_name": name,
	"launch_template": [{"name": "lt"}],
	"tags": {"fairshare:replica-gpus": "1", "fairshare:replica-cpu": "1", "fairshare:replica-memory-mib": "1024"},
}, after))

hardened_lt := change("module.node_pools.aws_launch_template.this", "aws_launch_template", {"name": "lt", "metadata_options": [{"http_tokens": "required", "http_put_response_hop_limit": 1}]})

gpu_taint := [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]

good_bucket := [bucket, sse("aws:kms", "arn:aws:kms:eu-west-1:1:key/k"), versioning("Enabled"), pab(true)]

# The region comes from the provider's region variable, as in terraform/region.
plan(changes) := {
	"resource_changes": array.concat(changes, [hardened_lt]),
	"variables": {"region": {"value": "eu-west-1"}},
	"configuration": {"provider_config": {"aws": {"expressions": {"region": {"references": ["var.region"]}}}}},
}

rules(p) := {v.rule | some v in data.fairshare.infrastructure.violations with input as p}

test_a_compliant_region_passes if {
	count(data.fairshare.infrastructure.violations) == 0 with input as plan(array.concat(good_bucket, [
		secret("initech", "eu-west-1"),
		node_group("gpu-small", {"ami_type": "AL2023_x86_64_NVIDIA", "instance_types": ["g6.xlarge"], "taint": gpu_taint}),
		node_group("system", {"ami_type": "AL2023_x86_64_STANDARD", "instance_types": ["m6i.large"], "taint": []}),
	]))
}

test_a_key_created_in_the_same_plan_counts if {
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([bucket, sse_new_key, versioning("Enabled"), pab(true)])
}

test_no_encryption_is_denied if {
	rules(plan([bucket, versioning("Enabled"), pab(true)])) == {"bucket-not-kms-encrypted"}
}

test_aes256_is_denied if {
	rules(plan([bucket, sse("AES256", null), versioning("Enabled"), pab(true)])) == {"bucket-not-kms-encrypted"}
}

test_kms_without_a_key_is_denied if {
	rules(plan([bucket, sse("aws:kms", ""), versioning("Enabled"), pab(true)])) == {"bucket-not-kms-encrypted"}
}

test_encryption_of_another_bucket_does_not_count if {
	other := object.union(sse("aws:kms", "arn:aws:kms:eu-west-1:1:key/k"), {"change": {"after": {"bucket": "other"}}})
	rules(plan([bucket, other, versioning("Enabled"), pab(true)])) == {"bucket-not-kms-encrypted"}
}

test_a_deleted_encryption_does_not_count if {
	deleted := object.union(sse("aws:kms", "arn:aws:kms:eu-west-1:1:key/k"), {"change": {"actions": ["delete"], "after": null}})
	rules(plan([bucket, deleted, versioning("Enabled"), pab(true)])) == {"bucket-not-kms-encrypted"}
}

test_suspended_versioning_is_denied if {
	rules(plan([bucket, sse("aws:kms", "k"), versioning("Suspended"), pab(true)])) == {"bucket-not-versioned"}
}

test_no_versioning_is_denied if {
	rules(plan([bucket, sse("aws:kms", "k"), pab(true)])) == {"bucket-not-versioned"}
}

test_no_public_access_block_is_denied if {
	some v in data.fairshare.infrastructure.violations with input as plan([bucket, sse("aws:kms", "k"), versioning("Enabled")])
	v.rule == "bucket-public-access-not-blocked"
	v.field == "aws_s3_bucket_public_access_block"
	v.subject == "module.model_store.aws_s3_bucket.this"
}

test_a_public_access_flag_left_off_is_named if {
	vs := data.fairshare.infrastructure.violations with input as plan([bucket, sse("aws:kms", "k"), versioning("Enabled"), pab(false)])
	count(vs) == 1
	some v in vs
	v.rule == "bucket-public-access-not-blocked"
	v.field == "aws_s3_bucket_public_access_block.block_public_policy"
	contains(v.message, "block_public_policy")
}

test_a_bucket_outside_a_tenants_regions_is_denied if {
	vs := data.fairshare.infrastructure.violations with input as plan(array.concat(good_bucket, [secret("globex", "us-east-1")]))
	count(vs) == 1
	some v in vs
	v.rule == "bucket-outside-tenant-regions"
	contains(v.message, "globex")
	contains(v.message, "eu-west-1")
}

test_the_tenant_config_overrides_the_tags if {
	p := object.union(plan(array.concat(good_bucket, [secret("acme", "eu-west-1")])), {"tenants": {"acme": {"regions": {"allowed": ["us-east-1"]}}}})
	rules(p) == {"bucket-outside-tenant-regions"}
	q := object.union(plan(array.concat(good_bucket, [secret("acme", "us-east-1")])), {"tenants": {"acme": {"regions": {"allowed": ["eu-west-1"]}}}})
	rules(q) == set()
}

test_a_tenant_without_known_regions_fails_closed if {
	untagged := change("module.tenant_secrets.aws_secretsmanager_secret.seed[\"x\"]", "aws_secretsmanager_secret", {"tags": {"fairshare:tenant": "x"}})
	rules(plan(array.concat(good_bucket, [untagged]))) == {"bucket-outside-tenant-regions"}
}

test_a_hard_coded_provider_region_is_read if {
	p := object.union(plan(array.concat(good_bucket, [secret("initech", "eu-west-1")])), {"configuration": {"provider_config": {"aws": {"expressions": {"region": {"constant_value": "us-east-1"}}}}}})
	rules(p) == {"bucket-outside-tenant-regions"}
}

test_the_buckets_own_region_wins if {
	placed := change("aws_s3_bucket.models", "aws_s3_bucket", {"bucket": "models-eu", "region": "us-east-1"})
	rules(plan([placed, sse("aws:kms", "k"), versioning("Enabled"), pab(true), secret("initech", "eu-west-1")])) == {"bucket-outside-tenant-regions"}
}

test_an_unresolvable_region_is_denied if {
	p := object.union(plan(array.concat(good_bucket, [secret("initech", "eu-west-1")])), {"configuration": {"provider_config": {"aws": {"expressions": {"region": {"references": ["local.region"]}}}}}})
	some v in data.fairshare.infrastructure.violations with input as p
	v.rule == "bucket-outside-tenant-regions"
	contains(v.message, "cannot tell which region")
}

test_an_unresolvable_region_without_tenants_passes if {
	p := object.union(plan(good_bucket), {"configuration": {"provider_config": {"aws": {"expressions": {"region": {"references": ["local.region"]}}}}}})
	rules(p) == set()
}

# m6i.large matches no GPU pattern, so only the AMI makes it a GPU node group (and one that holds no GPU replica).
test_an_untainted_gpu_ami_node_group_is_denied if {
	vs := data.fairshare.infrastructure.violations with input as plan([node_group("gpu-small", {"ami_type": "AL2023_x86_64_NVIDIA", "instance_types": ["m6i.large"], "taint": []})])
	{v.rule | some v in vs} == {"gpu-node-group-untainted", "gpu-instance-too-small"}
	some v in vs
	v.rule == "gpu-node-group-untainted"
	v.subject == "module.node_pools.aws_eks_node_group.this[\"gpu-small\"]"
}

test_an_untainted_gpu_instance_node_group_is_denied if {
	rules(plan([node_group("p5", {"ami_type": "CUSTOM", "instance_types": ["p5.48xlarge"]})])) == {"gpu-node-group-untainted"}
}

test_an_untainted_gpu_labelled_node_group_is_denied if {
	rules(plan([node_group("gpu", {"ami_type": "CUSTOM", "instance_types": ["m6i.large"], "labels": {"fairshare.io/pool-kind": "gpu"}})])) == {"gpu-node-group-untainted", "gpu-instance-too-small"}
}

test_a_prefer_no_schedule_taint_is_not_enough if {
	soft := [{"key": "nvidia.com/gpu", "value": "present", "effect": "PREFER_NO_SCHEDULE"}]
	rules(plan([node_group("gpu", {"ami_type": "AL2023_x86_64_NVIDIA", "instance_types": ["g6.xlarge"], "taint": soft})])) == {"gpu-node-group-untainted"}
}

test_cpu_node_groups_need_no_taint if {
	rules(plan([node_group("cpu", {"ami_type": "AL2023_x86_64_STANDARD", "instance_types": ["c6i.2xlarge", "m6g.large"], "labels": {"fairshare.io/pool-kind": "cpu"}})])) == set()
}

test_a_bucket_whose_name_is_unknown_until_apply_fails_closed if {
	prefixed := {"address": "aws_s3_bucket.prefixed", "type": "aws_s3_bucket", "change": {"actions": ["create"], "after": {"bucket_prefix": "models-"}, "after_unknown": {"bucket": true}}}
	vs := data.fairshare.infrastructure.violations with input as plan([prefixed, sse("aws:kms", "k"), versioning("Enabled"), pab(true)])
	{v.rule | some v in vs} == {"bucket-not-kms-encrypted", "bucket-not-versioned", "bucket-public-access-not-blocked"}
	every v in vs {
		contains(v.message, "aws_s3_bucket.prefixed")
	}
}
