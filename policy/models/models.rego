# METADATA
# title: Tenants' own models
# description: |
#   What a tenant may bring of its own models (docs/design/0003): artifacts in a model bucket of a
#   region the tenant allows and under its own prefix, on a pool that exists wherever it is served,
#   in the formats, numbers and sizes its tier allows; a head over a base model deployed on its pool.
#   And where each own model is routed: every allowed region whose pool holds it.
package fairshare.models

import data.fairshare.platform

# Every tenant's artifacts live under this prefix of a region's model bucket; the runtime's role reads
# only there and each tenant's pipeline writes only its own (terraform/modules/iam).
prefix(id) := sprintf("tenants/%s/", [id])

# What every model of every tenant asks (tier caps, pool names, artifacts) is a rule, not a function:
# an engine evaluates a rule once per query and a function on every call (100 tenants with 10 models
# each: the whole decision took 83 ms with functions, 50 ms with rules, on regorus).
tier_caps[name] := object.get(tier, "own_models", {}) if {
	some name, tier in platform.tiers
}

# [bucket, key] of an s3:// artifact; undefined for a local path.
s3_parts(artifact) := [bucket, key] if {
	startswith(artifact, "s3://")
	parts := split(trim_prefix(artifact, "s3://"), "/")
	bucket := parts[0]
	key := concat("/", array.slice(parts, 1, count(parts)))
}

# The model bucket of every region, where the config names one.
buckets[region] := b if {
	some region, r in platform.regions
	b := r.model_bucket
}

pools[region] := {p.name | some p in r.pools} if {
	some region, r in platform.regions
}

# Each versioned artifact of each tenant's own models: [model, version, artifact spec].
artifacts[id] := [[m, v, a] |
	some m, om in object.get(t, "own_models", {})
	some v, a in om.versions
] if {
	some id, t in input.tenants
}

# A head's base is deployed on its pool in a region: that catalog version runs there, on that pool.
base_served(om, region) if {
	[model, version] := split(om.base, "/")
	mv := platform.models[model].versions[version]
	mv.pool == om.pool
	region in mv.regions
}

servable(om, region) if {
	om.pool in pools[region]
	om.format != "head"
}

servable(om, region) if {
	om.pool in pools[region]
	base_served(om, region)
}

# METADATA
# title: Own-model routes
# description: The tenant's own models routed in each region it allows, where their pool (and a head's base) is.
own_routes[id] := {region: names |
	some region in t.regions.allowed
	names := sort([m | some m, om in object.get(t, "own_models", {}); servable(om, region)])
} if {
	some id, t in input.tenants
}

# METADATA
# title: Artifacts stay in the tenant's regions
# description: An own model's S3 artifact must sit in the model bucket of a region the tenant allows.
violations contains v if {
	some id, t in input.tenants
	some [m, ver, a] in artifacts[id]
	[bucket, _] := s3_parts(a.artifact)
	allowed := sort([b | some r in t.regions.allowed; b := buckets[r]])
	not bucket in allowed
	v := {
		"rule": "own-model-artifact-outside-allowed-regions",
		"subject": id,
		"field": sprintf("own_models.%s.versions.%s.artifact", [m, ver]),
		"message": sprintf("bucket %s is not the model bucket of a region the tenant allows; its model data may stay only in %s (buckets: %s)", [bucket, concat(", ", sort(t.regions.allowed)), concat(", ", allowed)]),
	}
}

# METADATA
# title: Artifacts under the tenant's own prefix
# description: An own model's S3 artifact must be under tenants/<tenant>/ of its bucket, where only the tenant's pipeline writes.
violations contains v if {
	some id, t in input.tenants
	some [m, ver, a] in artifacts[id]
	[bucket, key] := s3_parts(a.artifact)
	not startswith(key, prefix(id))
	v := {
		"rule": "own-model-artifact-outside-tenant-prefix",
		"subject": id,
		"field": sprintf("own_models.%s.versions.%s.artifact", [m, ver]),
		"message": sprintf("s3://%s/%s is not under the tenant's own prefix %s; a tenant may only serve bytes its own pipeline wrote", [bucket, key, prefix(id)]),
	}
}

# METADATA
# title: Pool exists where the model is served
# description: An own model's pool must exist in every region the tenant allows (its routes serve it there).
violations contains v if {
	some id, t in input.tenants
	some m, om in object.get(t, "own_models", {})
	missing := sort([r | some r in t.regions.allowed; not om.pool in pools[r]])
	count(missing) > 0
	v := {
		"rule": "own-model-pool-missing",
		"subject": id,
		"field": sprintf("own_models.%s.pool", [m]),
		"message": sprintf("pool %s does not exist in %s, where the tenant is served", [om.pool, concat(", ", missing)]),
	}
}

# METADATA
# title: Formats the tier allows
# description: An own model's format must be one its tenant's tier allows.
violations contains v if {
	some id, t in input.tenants
	some m, om in object.get(t, "own_models", {})
	formats := object.get(tier_caps[t.tier], "formats", [])
	not om.format in formats
	v := {
		"rule": "own-model-format-not-allowed",
		"subject": id,
		"field": sprintf("own_models.%s.format", [m]),
		"message": sprintf("tier %s does not allow own models of format %s (it allows: %s)", [t.tier, om.format, concat(", ", sort(formats))]),
	}
}

# METADATA
# title: Models per tenant within the tier's cap
# description: A tenant may bring at most its tier's own_models.max_per_tenant models.
violations contains v if {
	some id, t in input.tenants
	n := count(object.get(t, "own_models", {}))
	cap := object.get(tier_caps[t.tier], "max_per_tenant", 0)
	n > cap
	v := {
		"rule": "own-models-over-tier-cap",
		"subject": id,
		"field": "own_models",
		"message": sprintf("declares %d own models; tier %s allows at most %d", [n, t.tier, cap]),
	}
}

# METADATA
# title: Model size within the tier's cap
# description: Each version's artifact may be at most the tier's own_models.max_bytes_per_model bytes.
violations contains v if {
	some id, t in input.tenants
	some [m, ver, a] in artifacts[id]
	cap := object.get(tier_caps[t.tier], "max_bytes_per_model", 0)
	a.bytes > cap
	v := {
		"rule": "own-model-too-large",
		"subject": id,
		"field": sprintf("own_models.%s.versions.%s.artifact", [m, ver]),
		"message": sprintf("artifact is %d bytes; tier %s allows at most %d bytes per model", [a.bytes, t.tier, cap]),
	}
}

# METADATA
# title: Model size declared
# description: |
#   Where the tier caps a model's size, each version on S3 declares its bytes: the config load reads no
#   bucket (a local artifact is measured), and the runtime refuses an artifact of another size unread.
violations contains v if {
	some id, t in input.tenants
	some [m, ver, a] in artifacts[id]
	cap := tier_caps[t.tier].max_bytes_per_model
	startswith(a.artifact, "s3://") # a local file is measured by the config load
	object.get(a, "bytes", null) == null
	v := {
		"rule": "own-model-size-undeclared",
		"subject": id,
		"field": sprintf("own_models.%s.versions.%s.bytes", [m, ver]),
		"message": sprintf("declare the artifact's size in bytes: tier %s allows at most %d bytes per model, and the runtime refuses an artifact of another size", [t.tier, cap]),
	}
}

# METADATA
# title: A head's base exists
# description: A head model's base must be a catalog model version.
violations contains v if {
	some id, t in input.tenants
	some m, om in object.get(t, "own_models", {})
	om.format == "head"
	[model, version] := split(om.base, "/")
	not platform.models[model].versions[version]
	v := {
		"rule": "head-base-unknown",
		"subject": id,
		"field": sprintf("own_models.%s.base", [m]),
		"message": sprintf("base %s is not a catalog model version", [om.base]),
	}
}

# METADATA
# title: A head's base runs on its pool
# description: A head model's base must be deployed on the head's pool in every region the tenant allows.
violations contains v if {
	some id, t in input.tenants
	some m, om in object.get(t, "own_models", {})
	om.format == "head"
	[model, version] := split(om.base, "/")
	platform.models[model].versions[version]
	missing := sort([r | some r in t.regions.allowed; not base_served(om, r)])
	count(missing) > 0
	v := {
		"rule": "head-base-not-on-pool",
		"subject": id,
		"field": sprintf("own_models.%s.base", [m]),
		"message": sprintf("base %s is not deployed on pool %s in %s, where the tenant is served; a head runs on a replica that serves its base", [om.base, om.pool, concat(", ", missing)]),
	}
}
