package fairshare.residency_test

import data.fairshare.residency

# Fixture: embedder v1 and v2 run in both regions; classifier v1 in both, v2 only in us; ranker only in us.
platform := {
	"tiers": {"pro": {"weight": 2, "quotas": {"concurrency": 16, "requests_per_second": 50, "tokens_per_minute": 300000, "gpus": 0}}},
	"regions": {
		"us": {"pools": [{"name": "cpu", "accelerator": "cpu", "replicas": 2, "gpus_per_replica": 0}]},
		"eu": {"pools": [{"name": "cpu", "accelerator": "cpu", "replicas": 2, "gpus_per_replica": 0}]},
	},
	"models": {
		"embedder": {"kind": "embedding", "versions": {
			"v1": {"pool": "cpu", "regions": ["us", "eu"]},
			"v2": {"pool": "cpu", "regions": ["us", "eu"]},
		}},
		"classifier": {"kind": "classifier", "versions": {
			"v1": {"pool": "cpu", "regions": ["us", "eu"]},
			"v2": {"pool": "cpu", "regions": ["us"]},
		}},
		"ranker": {"kind": "classifier", "versions": {"v1": {"pool": "cpu", "regions": ["us"]}}},
	},
}

tenant(home, allowed, models) := {"tier": "pro", "regions": {"home": home, "allowed": allowed}, "models": models}

routes(tenants) := x if {
	x := residency.routes with input as {"tenants": tenants} with data.fairshare.platform as platform
}

violations(tenants) := x if {
	x := residency.violations with input as {"tenants": tenants} with data.fairshare.platform as platform
}

rules(tenants) := {v.rule | some v in violations(tenants)}

# Routes

test_routes_per_allowed_region if {
	t := tenant("us", ["us", "eu"], {"embedder": {"split": {"v1": 90, "v2": 10}}, "classifier": {"split": {"v1": 100, "v2": 0}}})
	routes({"a": t}).a == {
		"us": {"embedder": ["v1", "v2"], "classifier": ["v1", "v2"]},
		# classifier v2 is not deployed in eu: its weight-0 route there is left out, nothing else moves.
		"eu": {"embedder": ["v1", "v2"], "classifier": ["v1"]},
	}
	rules({"a": t}) == set()
}

test_routes_only_in_allowed_regions if {
	t := tenant("eu", ["eu"], {"embedder": {"split": {"v1": 100}}})
	routes({"a": t}).a == {"eu": {"embedder": ["v1"]}}
}

test_weight_zero_version_stays_addressable if {
	t := tenant("us", ["us"], {"embedder": {"split": {"v1": 100, "v2": 0}}})
	routes({"a": t}).a.us.embedder == ["v1", "v2"]
	rules({"a": t}) == set()
}

test_only_granted_versions_and_models_are_routed if {
	# v2 of embedder is deployed but not in the tenant's split; classifier is not granted at all.
	t := tenant("us", ["us"], {"embedder": {"split": {"v1": 100}}})
	routes({"a": t}).a == {"us": {"embedder": ["v1"]}}
}

test_model_with_no_version_in_a_region_routes_nothing_there if {
	t := tenant("us", ["us", "eu"], {"ranker": {"split": {"v1": 0}}, "embedder": {"split": {"v1": 100}}})
	r := routes({"a": t}).a
	r.us.ranker == ["v1"]
	r.eu.ranker == []
	rules({"a": t}) == set()
}

test_each_tenant_gets_its_own_routes if {
	ts := {
		"a": tenant("us", ["us"], {"classifier": {"split": {"v2": 100}}}),
		"b": tenant("eu", ["eu"], {"classifier": {"split": {"v1": 100}}}),
	}
	routes(ts) == {"a": {"us": {"classifier": ["v2"]}}, "b": {"eu": {"classifier": ["v1"]}}}
}

# Violations

test_split_outside_allowed_regions_is_denied if {
	t := tenant("us", ["us", "eu"], {"classifier": {"split": {"v1": 70, "v2": 30}}})
	[v] := [x | some x in violations({"a": t})]
	v.rule == "split-outside-allowed-regions"
	v.subject == "a"
	v.field == "models.classifier.split.v2"
	v.message == "classifier:v2 takes 30% of the tenant's traffic but is not deployed in eu, where the tenant is served and its data must stay (it runs only in us)"
}

test_split_inside_allowed_regions_passes if {
	rules({"a": tenant("us", ["us"], {"classifier": {"split": {"v1": 70, "v2": 30}}})}) == set()
}

test_split_missing_in_several_regions_names_them_all if {
	ts := {"a": tenant("us", ["us", "eu", "ap"], {"ranker": {"split": {"v1": 100}}})}
	[v] := [x | some x in violations(ts)]
	contains(v.message, "is not deployed in ap, eu,")
}

test_home_outside_allowed_regions_is_denied if {
	t := tenant("eu", ["us"], {})
	[v] := [x | some x in violations({"a": t})]
	v.rule == "home-outside-allowed-regions"
	v.subject == "a"
	v.field == "regions.home"
	v.message == "home region eu is not among the allowed regions us"
}

test_failover_outside_allowed_regions_is_denied if {
	t := object.union(tenant("us", ["us"], {}), {"regions": {"failover": ["us", "eu"]}})
	[v] := [x | some x in violations({"a": t})]
	v.rule == "failover-outside-allowed-regions"
	v.subject == "a"
	v.field == "regions.failover[1]"
	v.message == "may not fail over to eu: the tenant's data may stay only in us"
}

test_failover_inside_allowed_regions_passes if {
	t := object.union(tenant("us", ["us", "eu"], {}), {"regions": {"failover": ["eu"]}})
	rules({"a": t}) == set()
}
