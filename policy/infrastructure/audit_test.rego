package fairshare.infrastructure_audit_test

# The policy is referred to as data.fairshare.infrastructure, never imported (infrastructure_test.rego says why).

change(address, type, after) := {"address": address, "type": type, "change": {"actions": ["create"], "after": after, "after_unknown": {}}}

audit_bucket(extra) := change("module.audit_store.aws_s3_bucket.this", "aws_s3_bucket", object.union(
	{"bucket": "audit-eu", "object_lock_enabled": true, "force_destroy": false, "tags": {"fairshare:role": "audit"}},
	extra,
))

lock(retention) := change("module.audit_store.aws_s3_bucket_object_lock_configuration.this", "aws_s3_bucket_object_lock_configuration", {
	"bucket": "audit-eu",
	"rule": [{"default_retention": [retention]}],
})

# No aws_s3_bucket_versioning: Object Lock keeps versioning on (infrastructure.rego counts it).
settings := [
	change("module.audit_store.aws_s3_bucket_server_side_encryption_configuration.this", "aws_s3_bucket_server_side_encryption_configuration", {
		"bucket": "audit-eu",
		"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "aws:kms", "kms_master_key_id": "arn:aws:kms:eu-west-1:1:key/a"}]}],
	}),
	change("module.audit_store.aws_s3_bucket_public_access_block.this", "aws_s3_bucket_public_access_block", {
		"bucket": "audit-eu", "block_public_acls": true, "block_public_policy": true,
		"ignore_public_acls": true, "restrict_public_buckets": true,
	}),
]

compliance_400 := {"mode": "COMPLIANCE", "days": 400, "years": null}

plan(changes) := {"resource_changes": array.concat(changes, settings)}

found(p) := {[v.rule, v.field] | some v in data.fairshare.infrastructure.violations with input as p}

test_a_compliance_locked_audit_bucket_passes if {
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([audit_bucket({}), lock(compliance_400)])
}

test_retention_in_years_counts if {
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([audit_bucket({}), lock({"mode": "COMPLIANCE", "days": null, "years": 2})])
}

test_an_audit_bucket_without_object_lock_is_denied if {
	found(plan([audit_bucket({"object_lock_enabled": false}), lock(compliance_400)])) == {
		["audit-bucket-not-locked", "aws_s3_bucket.object_lock_enabled"],
		# and, without the lock, it is not versioned either
		["bucket-not-versioned", "aws_s3_bucket_versioning.versioning_configuration.status"],
	}
}

test_an_audit_bucket_without_a_default_retention_is_denied if {
	found(plan([audit_bucket({})])) == {["audit-bucket-not-locked", "aws_s3_bucket_object_lock_configuration.rule.default_retention"]}
}

test_governance_mode_is_denied if {
	found(plan([audit_bucket({}), lock({"mode": "GOVERNANCE", "days": 400})])) == {["audit-bucket-not-locked", "aws_s3_bucket_object_lock_configuration.rule.default_retention.mode"]}
}

test_governance_mode_passes_on_a_throwaway_bucket if {
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([audit_bucket({"force_destroy": true}), lock({"mode": "GOVERNANCE", "days": 400})])
}

test_a_retention_shorter_than_the_audit_period_is_denied if {
	found(plan([audit_bucket({}), lock({"mode": "COMPLIANCE", "days": 30})])) == {["audit-retention-too-short", "aws_s3_bucket_object_lock_configuration.rule.default_retention.days"]}
}

test_another_buckets_lock_does_not_count if {
	other := json.patch(lock(compliance_400), [{"op": "replace", "path": "/change/after/bucket", "value": "models-eu"}])
	found(plan([audit_bucket({}), other])) == {["audit-bucket-not-locked", "aws_s3_bucket_object_lock_configuration.rule.default_retention"]}
}

test_a_bucket_not_tagged_audit_needs_no_lock if {
	models := change("module.model_store.aws_s3_bucket.this", "aws_s3_bucket", {"bucket": "audit-eu", "tags": {"fairshare:role": "models"}})
	audit_rules := {r | some [r, _] in found(plan([models])); startswith(r, "audit-")}
	count(audit_rules) == 0
}

lifecycle(days) := change("module.audit_store.aws_s3_bucket_lifecycle_configuration.this", "aws_s3_bucket_lifecycle_configuration", {
	"bucket": "audit-eu",
	"rule": [{"id": "expire-after-retention", "status": "Enabled", "filter": [{"prefix": "audit/"}], "expiration": [{"days": days, "expired_object_delete_marker": false}]}],
})

test_records_expiring_after_the_audit_period_pass if {
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([audit_bucket({}), lock(compliance_400), lifecycle(400)])
}

test_records_expiring_before_the_audit_period_are_denied if {
	found(plan([audit_bucket({}), lock(compliance_400), lifecycle(90)])) == {["audit-expires-too-soon", "aws_s3_bucket_lifecycle_configuration.rule.expiration.days"]}
}

test_a_disabled_early_expiry_passes if {
	disabled := json.patch(lifecycle(90), [{"op": "replace", "path": "/change/after/rule/0/status", "value": "Disabled"}])
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([audit_bucket({}), lock(compliance_400), disabled])
}

test_another_buckets_early_expiry_does_not_count if {
	other := json.patch(lifecycle(90), [{"op": "replace", "path": "/change/after/bucket", "value": "models-eu"}])
	count(data.fairshare.infrastructure.violations) == 0 with input as plan([audit_bucket({}), lock(compliance_400), other])
}
