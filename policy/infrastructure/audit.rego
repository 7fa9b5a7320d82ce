# METADATA
# title: The audit trail is write-once
# description: |
#   Checks the audit bucket of a Terraform plan (an S3 bucket tagged fairshare:role = audit, the
#   audit_store module's): S3 Object Lock is on, with a default retention in COMPLIANCE mode for at least
#   policy/retention's audit_days. Without the lock a shipped record can be deleted or overwritten by
#   whoever holds write access, and the hash chain only shows afterwards that it is gone. A bucket Terraform
#   may destroy with its objects (force_destroy: a throwaway region) may lock in GOVERNANCE mode instead,
#   since a COMPLIANCE-locked record cannot be deleted by anyone, so neither could such a bucket.
package fairshare.infrastructure

audit_role_tag := "fairshare:role"

audit_buckets contains b if {
	some b in buckets
	b.change.after.tags[audit_role_tag] == "audit"
}

# The default retention rules of the bucket named `name` ([] when it has no lock configuration).
audit_retentions(name) := [r |
	some s in settings("aws_s3_bucket_object_lock_configuration", name)
	some rule in s.change.after.rule
	some r in rule.default_retention
]

# The modes a bucket's records may be locked in.
audit_lock_modes(b) := {"COMPLIANCE", "GOVERNANCE"} if b.change.after.force_destroy == true

audit_lock_modes(b) := {"COMPLIANCE"} if not b.change.after.force_destroy == true

audit_retention_days(r) := r.days if is_number(r.days)

audit_retention_days(r) := r.years * 365 if {
	not is_number(r.days)
	is_number(r.years)
}

# METADATA
# title: The audit bucket has Object Lock
# description: An audit bucket needs object_lock_enabled and a default retention in COMPLIANCE mode (GOVERNANCE only on a force_destroy bucket).
violations contains v if {
	some b in audit_buckets
	not b.change.after.object_lock_enabled == true
	v := {
		"rule": "audit-bucket-not-locked",
		"subject": b.address,
		"field": "aws_s3_bucket.object_lock_enabled",
		"message": sprintf("audit bucket %s has no S3 Object Lock (object_lock_enabled, which only a new bucket can get); a shipped audit record could be deleted or overwritten", [bucket_label(b)]),
	}
}

violations contains v if {
	some b in audit_buckets
	count(audit_retentions(b.change.after.bucket)) == 0
	v := {
		"rule": "audit-bucket-not-locked",
		"subject": b.address,
		"field": "aws_s3_bucket_object_lock_configuration.rule.default_retention",
		"message": sprintf("audit bucket %s has no default Object Lock retention (aws_s3_bucket_object_lock_configuration); records shipped without one of their own would not be locked", [bucket_label(b)]),
	}
}

violations contains v if {
	some b in audit_buckets
	some r in audit_retentions(b.change.after.bucket)
	not r.mode in audit_lock_modes(b)
	v := {
		"rule": "audit-bucket-not-locked",
		"subject": b.address,
		"field": "aws_s3_bucket_object_lock_configuration.rule.default_retention.mode",
		"message": sprintf("audit bucket %s locks its records in %s mode; it must be COMPLIANCE, which no principal can bypass (GOVERNANCE only where the bucket is force_destroy, a throwaway region)", [bucket_label(b), r.mode]),
	}
}

# METADATA
# title: Audit records are locked for their retention
# description: The audit bucket's default retention is at least policy/retention's audit_days.
violations contains v if {
	some b in audit_buckets
	some r in audit_retentions(b.change.after.bucket)
	not audit_retention_days(r) >= data.fairshare.retention.audit_days
	v := {
		"rule": "audit-retention-too-short",
		"subject": b.address,
		"field": "aws_s3_bucket_object_lock_configuration.rule.default_retention.days",
		"message": sprintf("audit bucket %s locks its records for %v days; policy/retention keeps audit records %d days", [bucket_label(b), object.get(r, "days", object.get(r, "years", "no")), data.fairshare.retention.audit_days]),
	}
}

# The expiry days of the lifecycle rules on the bucket named `name` (those that expire current objects).
audit_expiry_days(name) := [e.days |
	some s in settings("aws_s3_bucket_lifecycle_configuration", name)
	some rule in s.change.after.rule
	object.get(rule, "status", "Enabled") == "Enabled"
	some e in object.get(rule, "expiration", [])
	is_number(e.days)
]

# METADATA
# title: Audit records are kept for their retention
# description: No lifecycle rule on the audit bucket expires records before policy/retention's audit_days.
violations contains v if {
	some b in audit_buckets
	some days in audit_expiry_days(b.change.after.bucket)
	days < data.fairshare.retention.audit_days
	v := {
		"rule": "audit-expires-too-soon",
		"subject": b.address,
		"field": "aws_s3_bucket_lifecycle_configuration.rule.expiration.days",
		"message": sprintf("audit bucket %s expires its records after %v days; policy/retention keeps audit records %d days (the lock keeps the version, but a delete marker hides it from every reader)", [bucket_label(b), days, data.fairshare.retention.audit_days]),
	}
}
