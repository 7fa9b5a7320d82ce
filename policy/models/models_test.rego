package fairshare.models_test

import data.fairshare.models

# Fixture: two regions with model buckets (ap has none and no gpu pool); embedder v1 on gpu in us and
# eu, embedder v2 on cpu in us only. Tier pro: 2 models of at most 1,000 bytes, onnx and head; tier
# free: nothing.
platform := {
	"tiers": {
		"pro": {"weight": 2, "own_models": {"max_per_tenant": 2, "max_bytes_per_model": 1000, "formats": ["onnx", "head"]}},
		"free": {"weight": 1},
	},
	"regions": {
		"us": {"model_bucket": "models-us", "pools": [{"name": "cpu"}, {"name": "gpu"}]},
		"eu": {"model_bucket": "models-eu", "pools": [{"name": "cpu"}, {"name": "gpu"}]},
		"ap": {"pools": [{"name": "cpu"}]},
	},
	"models": {"embedder": {"kind": "embedding", "versions": {
		"v1": {"pool": "gpu", "regions": ["us", "eu"]},
		"v2": {"pool": "cpu", "regions": ["us"]},
	}}},
}

art(uri) := {"artifact": uri, "sha256": "00", "bytes": 10}

router(uri) := {"format": "onnx", "pool": "cpu", "versions": {"1": art(uri)}, "split": {"1": 100}}

head(base, pool) := {"format": "head", "base": base, "pool": pool, "versions": {"1": art("/models/h.onnx")}, "split": {"1": 100}}

tenant(allowed, own) := {"tier": "pro", "regions": {"home": allowed[0], "allowed": allowed}, "own_models": own}

violations(tenants) := x if {
	x := models.violations with input as {"tenants": tenants} with data.fairshare.platform as platform
}

rules(tenants) := {v.rule | some v in violations(tenants)}

only(tenants) := v if {
	[v] := [x | some x in violations(tenants)]
}

own_routes(tenants) := x if {
	x := models.own_routes with input as {"tenants": tenants} with data.fairshare.platform as platform
}

# Routes

test_own_models_routed_in_every_allowed_region if {
	t := tenant(["us", "eu"], {"r": router("s3://models-us/tenants/a/r/1/model.onnx"), "h": head("embedder/v1", "gpu")})
	own_routes({"a": t}).a == {"us": ["h", "r"], "eu": ["h", "r"]}
	rules({"a": t}) == set()
}

test_tenant_without_own_models_routes_none if {
	own_routes({"a": {"tier": "pro", "regions": {"home": "us", "allowed": ["us"]}}}).a == {"us": []}
}

test_model_whose_pool_is_missing_is_not_routed_there if {
	t := tenant(["us", "ap"], {"h": head("embedder/v1", "gpu")})
	own_routes({"a": t}).a == {"us": ["h"], "ap": []}
}

# Artifacts in the tenant's regions

test_artifact_in_an_allowed_regions_bucket_passes if {
	rules({"a": tenant(["eu"], {"r": router("s3://models-eu/tenants/a/r/1/model.onnx")})}) == set()
}

test_artifact_in_another_regions_bucket_is_denied if {
	v := only({"a": tenant(["eu"], {"r": router("s3://models-us/tenants/a/r/1/model.onnx")})})
	v.rule == "own-model-artifact-outside-allowed-regions"
	v.subject == "a"
	v.field == "own_models.r.versions.1.artifact"
	v.message == "bucket models-us is not the model bucket of a region the tenant allows; its model data may stay only in eu (buckets: models-eu)"
}

test_local_artifact_is_not_a_bucket_question if {
	rules({"a": tenant(["us"], {"r": router("/srv/models/r.onnx")})}) == set()
}

# Artifacts under the tenant's prefix

test_artifact_under_another_tenants_prefix_is_denied if {
	v := only({"a": tenant(["us"], {"r": router("s3://models-us/tenants/b/r/1/model.onnx")})})
	v.rule == "own-model-artifact-outside-tenant-prefix"
	v.field == "own_models.r.versions.1.artifact"
	v.message == "s3://models-us/tenants/b/r/1/model.onnx is not under the tenant's own prefix tenants/a/; a tenant may only serve bytes its own pipeline wrote"
}

test_prefix_must_be_a_whole_path_segment if {
	# tenants/ab/ is not tenant a's, though it starts with "tenants/a".
	rules({"a": tenant(["us"], {"r": router("s3://models-us/tenants/ab/r.onnx")})}) == {"own-model-artifact-outside-tenant-prefix"}
}

# Pool exists where served

test_pool_missing_in_an_allowed_region_is_denied if {
	t := tenant(["us", "ap"], {"h": head("embedder/v1", "gpu")})
	v := [x | some x in violations({"a": t}); x.rule == "own-model-pool-missing"][0]
	v.field == "own_models.h.pool"
	v.message == "pool gpu does not exist in ap, where the tenant is served"
}

test_pool_present_everywhere_passes if {
	rules({"a": tenant(["us", "ap"], {"r": router("/m.onnx")})}) == set()
}

# Formats per tier

test_format_the_tier_does_not_allow_is_denied if {
	t := object.union(tenant(["us"], {"r": router("/m.onnx")}), {"tier": "free"})
	v := [x | some x in violations({"a": t}); x.rule == "own-model-format-not-allowed"][0]
	v.field == "own_models.r.format"
	v.message == "tier free does not allow own models of format onnx (it allows: )"
}

test_format_the_tier_allows_passes if {
	not "own-model-format-not-allowed" in rules({"a": tenant(["us"], {"r": router("/m.onnx")})})
}

# Count per tier

test_more_models_than_the_tier_allows_is_denied if {
	t := tenant(["us"], {"r": router("/m.onnx"), "s": router("/m.onnx"), "t": router("/m.onnx")})
	v := only({"a": t})
	v.rule == "own-models-over-tier-cap"
	v.field == "own_models"
	v.message == "declares 3 own models; tier pro allows at most 2"
}

test_tier_that_says_nothing_allows_no_models if {
	t := object.union(tenant(["us"], {"h": head("embedder/v1", "gpu")}), {"tier": "free"})
	rules({"a": t}) == {"own-models-over-tier-cap", "own-model-format-not-allowed", "own-model-too-large"}
}

# Size per tier

test_artifact_larger_than_the_tier_allows_is_denied if {
	big := {"format": "onnx", "pool": "cpu", "versions": {"1": art("/m.onnx"), "2": object.union(art("/m.onnx"), {"bytes": 5000})}, "split": {"1": 100}}
	v := only({"a": tenant(["us"], {"r": big})})
	v.rule == "own-model-too-large"
	v.field == "own_models.r.versions.2.artifact"
	v.message == "artifact is 5000 bytes; tier pro allows at most 1000 bytes per model"
}

test_an_artifact_of_undeclared_size_is_denied_where_the_tier_caps_size if {
	# The config load reads no bucket: the size is the file's word, which the runtime holds the bytes to.
	unknown := {"format": "onnx", "pool": "cpu", "versions": {"1": {"artifact": "s3://models-us/tenants/a/r.onnx", "sha256": "00"}}}
	v := only({"a": tenant(["us"], {"r": unknown})})
	v.rule == "own-model-size-undeclared"
	v.field == "own_models.r.versions.1.bytes"
	startswith(v.message, "declare the artifact's size in bytes: tier pro allows at most 1000 bytes per model")
	declared := {"format": "onnx", "pool": "cpu", "versions": {"1": object.union(unknown.versions["1"], {"bytes": 900})}}
	rules({"a": tenant(["us"], {"r": declared})}) == set()
}

# Heads

test_head_over_an_unknown_base_is_denied if {
	v := only({"a": tenant(["us"], {"h": head("ranker/v1", "gpu")})})
	v.rule == "head-base-unknown"
	v.field == "own_models.h.base"
	v.message == "base ranker/v1 is not a catalog model version"
}

test_head_base_on_another_pool_is_denied if {
	v := only({"a": tenant(["us"], {"h": head("embedder/v1", "cpu")})})
	v.rule == "head-base-not-on-pool"
	v.message == "base embedder/v1 is not deployed on pool cpu in us, where the tenant is served; a head runs on a replica that serves its base"
}

test_head_base_missing_in_one_allowed_region_is_denied if {
	v := only({"a": tenant(["us", "eu"], {"h": head("embedder/v2", "cpu")})})
	v.rule == "head-base-not-on-pool"
	contains(v.message, "on pool cpu in eu,")
}

test_head_base_on_its_pool_passes if {
	rules({"a": tenant(["us"], {"h": head("embedder/v2", "cpu")})}) == set()
}
