package fairshare.quota_test

import data.fairshare.quota

# Fixture: a pro tier with limits on concurrency and GPUs, a free tier with no limits; us has 4 GPUs
# (2 replicas x 2), eu has 2 (1 x 2, plus a CPU pool that adds none).
platform := {
	"tiers": {
		"pro": {
			"weight": 2,
			"quotas": {"concurrency": 16, "requests_per_second": 50, "tokens_per_minute": 300000, "gpus": 1},
			"limits": {"concurrency": 32, "gpus": 2},
		},
		"free": {
			"weight": 1,
			"quotas": {"concurrency": 4, "requests_per_second": 5, "tokens_per_minute": 20000, "gpus": 0},
		},
	},
	"regions": {
		"us": {"pools": [{"name": "gpu", "accelerator": "nvidia-l4", "replicas": 2, "gpus_per_replica": 2}]},
		"eu": {"pools": [
			{"name": "gpu", "accelerator": "nvidia-l4", "replicas": 1, "gpus_per_replica": 2},
			{"name": "cpu", "accelerator": "cpu", "replicas": 3, "gpus_per_replica": 0},
		]},
	},
	"models": {},
}

tenant(tier, allowed) := {"tier": tier, "regions": {"home": allowed[0], "allowed": allowed}, "models": {}}

with_fields(t, fields) := object.union(t, fields)

effective(tenants) := x if {
	x := quota.effective with input as {"tenants": tenants} with data.fairshare.platform as platform
}

weight(tenants) := x if {
	x := quota.weight with input as {"tenants": tenants} with data.fairshare.platform as platform
}

adjustments(tenants) := x if {
	x := quota.adjustments with input as {"tenants": tenants} with data.fairshare.platform as platform
}

# Each entry's violations, and the fleet-wide ones over the entries' claims: what a whole config gets.
violations(tenants) := x | fleet(claims(tenants)) if {
	x := quota.violations with input as {"tenants": tenants} with data.fairshare.platform as platform
}

claims(tenants) := x if {
	x := quota.claims_of_tenants with input as {"tenants": tenants} with data.fairshare.platform as platform
}

fleet(claims) := x if {
	x := quota.fleet_violations with input as {"claims": claims} with data.fairshare.platform as platform
}

rules(tenants) := {v.rule | some v in violations(tenants)}

# Effective quotas

test_tier_defaults_without_overrides if {
	effective({"a": tenant("pro", ["us"])}).a == platform.tiers.pro.quotas
	count(adjustments({"a": tenant("pro", ["us"])})) == 0
}

test_override_within_limit_is_kept if {
	t := with_fields(tenant("pro", ["us"]), {"quotas": {"concurrency": 24}})
	effective({"a": t}).a == {"concurrency": 24, "requests_per_second": 50, "tokens_per_minute": 300000, "gpus": 1}
	count(adjustments({"a": t})) == 0
}

test_override_below_default_is_kept if {
	t := with_fields(tenant("pro", ["us"]), {"quotas": {"gpus": 0, "tokens_per_minute": 1000}})
	e := effective({"a": t}).a
	e.gpus == 0
	e.tokens_per_minute == 1000
}

test_override_at_limit_is_kept_without_adjustment if {
	t := with_fields(tenant("pro", ["us"]), {"quotas": {"concurrency": 32}})
	effective({"a": t}).a.concurrency == 32
	count(adjustments({"a": t})) == 0
}

test_override_above_limit_is_clamped_and_reported if {
	t := with_fields(tenant("pro", ["us"]), {"quotas": {"concurrency": 100}})
	effective({"a": t}).a.concurrency == 32
	[adj] := [a | some a in adjustments({"a": t})]
	adj.rule == "quota-clamped-to-tier-limit"
	adj.subject == "a"
	adj.field == "quotas.concurrency"
	adj.message == "asks for concurrency 100; tier pro allows at most 32, so it gets 32"
}

test_each_clamped_quota_is_reported if {
	t := with_fields(tenant("pro", ["us"]), {"quotas": {"concurrency": 100, "gpus": 9, "requests_per_second": 10}})
	e := effective({"a": t}).a
	e == {"concurrency": 32, "requests_per_second": 10, "tokens_per_minute": 300000, "gpus": 2}
	{a.field | some a in adjustments({"a": t})} == {"quotas.concurrency", "quotas.gpus"}
}

test_override_without_tier_limit_is_kept if {
	pro := with_fields(tenant("pro", ["us"]), {"quotas": {"requests_per_second": 5000}})
	free := with_fields(tenant("free", ["us"]), {"quotas": {"concurrency": 400}})
	e := effective({"p": pro, "f": free})
	e.p.requests_per_second == 5000
	e.f.concurrency == 400
	count(adjustments({"p": pro, "f": free})) == 0
}

test_unknown_tier_gets_no_quotas if {
	effective({"a": tenant("gold", ["us"]), "p": tenant("pro", ["us"])}) == {"p": platform.tiers.pro.quotas}
}

# Weight

test_weight_is_the_tiers_by_default if {
	weight({"p": tenant("pro", ["us"]), "f": tenant("free", ["us"])}) == {"p": 2, "f": 1}
}

test_unknown_tier_gets_no_weight_and_others_keep_theirs if {
	weight({"p": tenant("pro", ["us"]), "g": tenant("gold", ["us"])}) == {"p": 2}
}

test_lower_weight_is_kept if {
	t := with_fields(tenant("pro", ["us"]), {"weight": 0.5})
	weight({"a": t}).a == 0.5
	rules({"a": t}) == set()
}

test_weight_equal_to_tier_passes if {
	rules({"a": with_fields(tenant("pro", ["us"]), {"weight": 2})}) == set()
}

test_weight_above_tier_is_a_violation if {
	t := with_fields(tenant("pro", ["us"]), {"weight": 8})
	[v] := [x | some x in violations({"a": t})]
	v.rule == "weight-above-tier"
	v.subject == "a"
	v.field == "weight"
	v.message == "weight 8 is above tier pro's weight 2; a tenant may lower its weight, not raise it"
}

# GPU guarantees against pool capacity

test_guarantees_up_to_capacity_pass if {
	# 4 pro tenants x 1 GPU in us (capacity 4); 2 in eu (capacity 2, the CPU pool adds nothing).
	ts := {
		"a": tenant("pro", ["us"]), "b": tenant("pro", ["us"]), "c": tenant("pro", ["us"]), "d": tenant("pro", ["us"]),
		"e": tenant("pro", ["eu"]), "f": tenant("pro", ["eu"]),
	}
	rules(ts) == set()
}

test_guarantees_over_capacity_are_a_violation if {
	ts := {"a": tenant("pro", ["eu"]), "b": tenant("pro", ["eu"]), "c": tenant("pro", ["eu"]), "z": tenant("free", ["eu"])}
	[v] := [x | some x in violations(ts)]
	v.rule == "gpu-guarantees-exceed-capacity"
	v.subject == "eu"
	v.field == "pools"

	startswith(v.message, "region eu guarantees 3 GPUs ({subjects}) but its pools have 2: add GPU pool replicas in regions.yaml")

	# Zero-GPU tenants are not named among the holders.
	v.subjects == ["a=1", "b=1", "c=1"]
}

test_holders_are_listed_largest_guarantee_first if {
	big := with_fields(tenant("pro", ["eu"]), {"quotas": {"gpus": 2}})
	ts := {"a": tenant("pro", ["eu"]), "b": big, "c": tenant("pro", ["eu"])}
	[v] := [x | some x in violations(ts)]
	startswith(v.message, "region eu guarantees 4 GPUs ({subjects}) but its pools have 2: ")
	v.subjects == ["b=2", "a=1", "c=1"]
}

test_a_claim_is_what_the_entry_guarantees_and_where if {
	c := claims({"a": with_fields(tenant("pro", ["us", "eu"]), {"quotas": {"gpus": 2}}), "g": tenant("gold", ["us"])})
	c == {"a": {"gpus": 2, "regions": ["eu", "us"], "members": ["a"]}}
}

test_claims_alike_count_once_per_member if {
	# What the control plane sends once entries are evaluated: claims grouped, each with its members.
	[v] := [x | some x in fleet({"k": {"gpus": 1, "regions": ["eu"], "members": ["x", "y", "z"]}})]
	startswith(v.message, "region eu guarantees 3 GPUs ({subjects}) but its pools have 2: add GPU pool replicas in regions.yaml")
	v.subjects == ["x=1", "y=1", "z=1"]
	fleet({"k": {"gpus": 1, "regions": ["eu"], "members": ["x", "y"]}}) == set()
}

test_members_each_count_toward_guarantees if {
	shared := with_fields(tenant("pro", ["eu"]), {"members": ["a", "b", "c"]})
	[v] := [x | some x in violations({"a": shared})]
	v.subject == "eu"
	v.subjects == ["a=1", "b=1", "c=1"]
}

test_one_member_entry_counts_once if {
	rules({"a": with_fields(tenant("pro", ["eu"]), {"members": ["a"]})}) == set()
}

test_guarantee_counts_in_every_allowed_region if {
	both := with_fields(tenant("pro", ["us", "eu"]), {"quotas": {"gpus": 2}})
	ts := {"a": both, "b": tenant("pro", ["eu"])}
	{v.subject | some v in violations(ts)} == {"eu"} # us: 2 of 4; eu: 3 of 2
}

test_clamped_gpus_count_at_the_limit if {
	# Asks for 9, gets the tier's limit of 2: fits eu's 2 GPUs.
	rules({"a": with_fields(tenant("pro", ["eu"]), {"quotas": {"gpus": 9}})}) == set()
}
