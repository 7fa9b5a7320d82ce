# METADATA
# title: Infrastructure
# description: |
#   Checks a Terraform plan (`terraform show -json <planfile>`) before it is applied: every S3 bucket
#   is encrypted with a KMS key, versioned, closed to the public and placed in a region that every
#   tenant the plan serves allows; every GPU node group is tainted so only GPU workloads land on it.
#   Settings are read from `resource_changes` (creates, updates and no-ops alike; deletes ignored) and
#   tied to their bucket by its name, which must therefore be known at plan time.
#   Tenants served by a plan are the `fairshare:tenant` tags of its Secrets Manager secrets; their
#   allowed regions come from `input.tenants` (the tenant config: {id: {"regions": {"allowed": [...]}}})
#   when given, else from the secret's `fairshare:allowed-regions` tag.
package fairshare.infrastructure

# Tunables.
gpu_taint_key := "nvidia.com/gpu"

gpu_taint_effect := "NO_SCHEDULE"

gpu_pool_kind_label := "fairshare.io/pool-kind"

# EKS AMI types that only make sense on GPU instances.
gpu_ami_types := {
	"AL2_x86_64_GPU",
	"AL2023_x86_64_NVIDIA",
	"AL2023_ARM_64_NVIDIA",
	"BOTTLEROCKET_x86_64_NVIDIA",
	"BOTTLEROCKET_ARM_64_NVIDIA",
}

# Instance families with GPUs: g4dn, g5, g6, g6e, p4d, p5, ...
gpu_instance_pattern := `^[gp][0-9][a-z0-9-]*\.`

kms_algorithms := {"aws:kms", "aws:kms:dsse"}

public_access_flags := ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"]

tenant_tag := "fairshare:tenant"

allowed_regions_tag := "fairshare:allowed-regions"

# Resources that exist after the plan is applied (a delete has no `after`).
live contains rc if {
	some rc in input.resource_changes
	rc.change.after != null
}

buckets contains b if {
	some b in live
	b.type == "aws_s3_bucket"
}

# The live resources of `type` that configure the bucket named `name`.
settings(type, name) := {s |
	some s in live
	s.type == type
	s.change.after.bucket == name
}

bucket_label(b) := name if {
	name := b.change.after.bucket
	is_string(name)
} else := b.address

# METADATA
# title: Buckets are encrypted with a KMS key
# description: Each bucket needs a server-side encryption configuration with sse_algorithm aws:kms (or aws:kms:dsse) and an explicit KMS key.
violations contains v if {
	some b in buckets
	not kms_encrypted(b)
	v := {
		"rule": "bucket-not-kms-encrypted",
		"subject": b.address,
		"field": "aws_s3_bucket_server_side_encryption_configuration.rule.apply_server_side_encryption_by_default",
		"message": sprintf("bucket %s has no default encryption with a KMS key (sse_algorithm aws:kms and a kms_master_key_id); model artifacts must be encrypted with the region's own key", [bucket_label(b)]),
	}
}

kms_encrypted(b) if {
	some s in settings("aws_s3_bucket_server_side_encryption_configuration", b.change.after.bucket)
	some i, rule in s.change.after.rule
	some j, by_default in rule.apply_server_side_encryption_by_default
	by_default.sse_algorithm in kms_algorithms
	kms_key_given(s, i, j)
}

kms_key_given(s, i, j) if {
	key := s.change.after.rule[i].apply_server_side_encryption_by_default[j].kms_master_key_id
	is_string(key)
	key != ""
}

# A key created in the same plan has an ARN only after apply.
kms_key_given(s, i, j) if {
	s.change.after_unknown.rule[i].apply_server_side_encryption_by_default[j].kms_master_key_id == true
}

# METADATA
# title: Buckets are versioned
# description: Each bucket needs aws_s3_bucket_versioning with status Enabled, or Object Lock (which keeps versioning on for good), so a replaced model can be restored.
violations contains v if {
	some b in buckets
	not versioned(b)
	v := {
		"rule": "bucket-not-versioned",
		"subject": b.address,
		"field": "aws_s3_bucket_versioning.versioning_configuration.status",
		"message": sprintf("bucket %s does not have versioning Enabled; an overwritten or deleted model could not be restored", [bucket_label(b)]),
	}
}

versioned(b) if {
	some s in settings("aws_s3_bucket_versioning", b.change.after.bucket)
	some c in s.change.after.versioning_configuration
	c.status == "Enabled"
}

# S3 turns versioning on with Object Lock and refuses to suspend it after (so such a bucket has no
# aws_s3_bucket_versioning: destroying one would try to suspend it).
versioned(b) if b.change.after.object_lock_enabled == true

# METADATA
# title: Buckets are not public
# description: Each bucket needs an aws_s3_bucket_public_access_block with all four flags true.
violations contains v if {
	some b in buckets
	not has_public_access_block(b)
	v := {
		"rule": "bucket-public-access-not-blocked",
		"subject": b.address,
		"field": "aws_s3_bucket_public_access_block",
		"message": sprintf("bucket %s has no public access block; %s must all be true so no ACL or policy can make models public", [bucket_label(b), concat(", ", public_access_flags)]),
	}
}

has_public_access_block(b) if {
	some _ in settings("aws_s3_bucket_public_access_block", b.change.after.bucket)
}

violations contains v if {
	some b in buckets
	some s in settings("aws_s3_bucket_public_access_block", b.change.after.bucket)
	off := [f | some f in public_access_flags; not s.change.after[f] == true]
	count(off) > 0
	v := {
		"rule": "bucket-public-access-not-blocked",
		"subject": b.address,
		"field": sprintf("aws_s3_bucket_public_access_block.%s", [off[0]]),
		"message": sprintf("bucket %s's public access block leaves %s off; all four flags must be true so no ACL or policy can make models public", [bucket_label(b), concat(", ", off)]),
	}
}

# METADATA
# title: Buckets stay in the regions their tenants allow
# description: A bucket's region (its own region attribute, else the provider's region) must be allowed by every tenant the plan serves.
violations contains v if {
	some b in buckets
	region := bucket_region(b)
	some [tenant, allowed] in served_tenants
	not region in allowed
	v := {
		"rule": "bucket-outside-tenant-regions",
		"subject": b.address,
		"field": "region",
		"message": sprintf("bucket %s would be in %s, but tenant %s, served by this plan, allows only %s; its data may not be stored there", [bucket_label(b), region, tenant, concat(", ", sort(allowed))]),
	}
}

violations contains v if {
	some b in buckets
	count(served_tenants) > 0
	not bucket_region(b)
	v := {
		"rule": "bucket-outside-tenant-regions",
		"subject": b.address,
		"field": "region",
		"message": sprintf("cannot tell which region bucket %s would be in (the provider's region is neither a constant nor a variable); residency cannot be checked, so the plan is refused", [bucket_label(b)]),
	}
}

bucket_region(b) := r if {
	r := b.change.after.region
	is_string(r)
} else := r if {
	r := input.configuration.provider_config.aws.expressions.region.constant_value
} else := r if {
	ref := input.configuration.provider_config.aws.expressions.region.references[0]
	startswith(ref, "var.")
	r := input.variables[trim_prefix(ref, "var.")].value
}

# [tenant id, the regions it allows] for every tenant with a secret in the plan. A tenant whose
# allowed regions are nowhere to be found allows none, so residency fails closed.
served_tenants contains [tenant, allowed] if {
	some s in live
	s.type == "aws_secretsmanager_secret"
	tenant := s.change.after.tags[tenant_tag]
	allowed := allowed_regions(tenant, s)
}

allowed_regions(tenant, s) := regions if {
	regions := input.tenants[tenant].regions.allowed
} else := regions if {
	regions := split(s.change.after.tags[allowed_regions_tag], " ")
} else := []

# METADATA
# title: GPU node groups are tainted
# description: A node group with a GPU AMI, a GPU instance type or the gpu pool-kind label must carry the nvidia.com/gpu NoSchedule taint.
violations contains v if {
	some ng in live
	ng.type == "aws_eks_node_group"
	gpu_node_group(ng)
	not gpu_tainted(ng)
	v := {
		"rule": "gpu-node-group-untainted",
		"subject": ng.address,
		"field": "taint",
		"message": sprintf("GPU node group %s has no %s taint with effect %s; without it any pod can be scheduled onto (and hold) its GPUs", [ng.change.after.node_group_name, gpu_taint_key, gpu_taint_effect]),
	}
}

gpu_node_group(ng) if ng.change.after.ami_type in gpu_ami_types

gpu_node_group(ng) if {
	some t in ng.change.after.instance_types
	regex.match(gpu_instance_pattern, t)
}

gpu_node_group(ng) if ng.change.after.labels[gpu_pool_kind_label] == "gpu"

gpu_tainted(ng) if {
	some t in ng.change.after.taint
	t.key == gpu_taint_key
	t.effect == gpu_taint_effect
}
