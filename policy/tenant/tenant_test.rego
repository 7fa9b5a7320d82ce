package fairshare.tenant_test

import data.fairshare.tenant

# Fixture: one tier with a concurrency limit, one region with 2 GPUs, one model deployed there.
platform := {
	"tiers": {"pro": {
		"weight": 2,
		"quotas": {"concurrency": 16, "requests_per_second": 50, "tokens_per_minute": 300000, "gpus": 1},
		"limits": {"concurrency": 32},
	}},
	"regions": {"us": {"pools": [{"name": "gpu", "accelerator": "nvidia-l4", "replicas": 1, "gpus_per_replica": 2}]}},
	"models": {"embedder": {"kind": "embedding", "versions": {"v1": {"pool": "gpu", "regions": ["us"]}}}},
}

good := {
	"tier": "pro",
	"data_class": "internal",
	"regions": {"home": "us", "allowed": ["us"]},
	"models": {"embedder": {"split": {"v1": 100}}},
}

result(tenants) := x if {
	x := tenant.result with input as {"tenants": tenants} with data.fairshare.platform as platform
}

test_decision_composes_every_concern if {
	r := result({"a": good})
	r.decisions.a == {
		"weight": 2,
		"quotas": {"concurrency": 16, "requests_per_second": 50, "tokens_per_minute": 300000, "gpus": 1},
		"routes": {"us": {"embedder": ["v1"]}},
		"pii": {"block": [], "redact": ["email", "phone"], "pseudonymise": [], "unredacted_models": []},
		"own_routes": {"us": []},
	}
	r.violations == []
	r.adjustments == []
}

test_every_tenant_gets_a_decision if {
	lower := object.union(good, {"weight": 1, "data_class": "public"})
	r := result({"a": good, "b": lower})
	object.keys(r.decisions) == {"a", "b"}
	r.decisions.b.weight == 1
	r.decisions.b.pii.redact == []
}

test_violations_of_every_concern_are_tagged if {
	bad := object.union(good, {
		"weight": 5, "regions": {"home": "eu"}, "pii": {"unredacted_models": ["embedder"]},
		# tier pro of this fixture allows no own models
		"own_models": {"m": {"format": "head", "base": "embedder/v1", "pool": "gpu", "versions": {}}},
	})
	r := result({"a": bad})
	{[v.concern, v.rule] | some v in r.violations} == {
		["quota", "weight-above-tier"],
		["residency", "home-outside-allowed-regions"],
		["pii", "unredacted-input-to-untrusted-model"],
		["models", "own-models-over-tier-cap"],
		["models", "own-model-format-not-allowed"],
	}
	every v in r.violations {
		v.subject == "a"
	}
}

test_platform_wide_violation_names_the_region if {
	# Three GPU guarantees of 1 in a region with 2 GPUs.
	r := result({"a": object.union(good, {"members": ["a", "b", "c"]})})
	[v] := r.violations
	v.concern == "quota"
	v.rule == "gpu-guarantees-exceed-capacity"
	v.subject == "us"
	v.subjects == ["a=1", "b=1", "c=1"]
}

entries(tenants) := x if {
	x := tenant.entries with input as {"tenants": tenants} with data.fairshare.platform as platform
}

fleet(claims) := x if {
	x := tenant.fleet with input as {"claims": claims} with data.fairshare.platform as platform
}

test_entries_and_fleet_answer_as_the_whole if {
	# What the control plane asks in two steps (each entry once, then the fleet over their claims)
	# is what one query over the whole config answers.
	ts := {"a": object.union(good, {"members": ["a", "b", "c"]}), "d": object.union(good, {"weight": 5})}
	e := entries(ts)
	e.claims == {"a": {"gpus": 1, "regions": ["us"]}, "d": {"gpus": 1, "regions": ["us"]}}
	grouped := {"k": {"gpus": 1, "regions": ["us"], "members": ["a", "b", "c", "d"]}}
	whole := result(ts)
	e.decisions == whole.decisions
	e.adjustments == whole.adjustments
	{v | some v in array.concat(e.violations, fleet(grouped))} == {v | some v in whole.violations}
	count(whole.violations) == 2
}

test_adjustments_are_reported_not_denied if {
	r := result({"a": object.union(good, {"quotas": {"concurrency": 64}})})
	r.violations == []
	r.decisions.a.quotas.concurrency == 32
	[adj] := r.adjustments
	adj.concern == "quota"
	adj.rule == "quota-clamped-to-tier-limit"
	adj.field == "quotas.concurrency"
}

test_tenant_with_unknown_data_class_gets_no_decision if {
	r := result({"a": good, "x": object.union(good, {"data_class": "secret"})})
	object.keys(r.decisions) == {"a"}
	[v] := r.violations
	v.concern == "pii"
	v.subject == "x"
}

test_no_tenants_no_decisions if {
	result({}) == {"decisions": {}, "violations": [], "adjustments": []}
}
