# METADATA
# title: Quotas
# description: |
#   A tenant's effective quotas and fair-share weight: its tier's defaults, its own overrides, clamped
#   to what its tier may have; and the platform-wide guarantee that the GPUs promised to the tenants
#   of a region fit in that region's GPU pools.
package fairshare.quota

import data.fairshare.platform

# METADATA
# title: Effective quotas
# description: |
#   A tenant's own override where it has one, else its tier's default; an override above the tier's
#   limit is clamped to the limit (and reported as an adjustment).
effective[id] := {k: v |
	some k, fallback in tier.quotas
	asked := object.get(overrides, k, fallback)
	v := min([asked, object.get(limits, k, asked)])
} if {
	some id, t in input.tenants
	tier := platform.tiers[t.tier]
	overrides := object.get(t, "quotas", {})
	limits := object.get(tier, "limits", {})
}

# METADATA
# title: Weight by tier
# description: A tenant's fair-share weight is its tier's, unless it sets a lower one.
weight[id] := w if {
	some id, t in input.tenants

	# Bound in the body, not the head: regorus drops the whole object when a head value is undefined
	# for one key (an unknown tier), where OPA leaves out only that key.
	w := object.get(t, "weight", platform.tiers[t.tier].weight)
}

adjustments contains a if {
	some id, t in input.tenants
	some k, asked in object.get(t, "quotas", {})
	limit := platform.tiers[t.tier].limits[k]
	asked > limit
	a := {
		"rule": "quota-clamped-to-tier-limit",
		"subject": id,
		"field": sprintf("quotas.%s", [k]),
		"message": sprintf("asks for %s %v; tier %s allows at most %v, so it gets %v", [k, asked, t.tier, limit, limit]),
	}
}

# GPUs a region's pools can give: replicas x GPUs per replica, over every pool.
gpu_capacity(region) := sum([n | some p in platform.regions[region].pools; n := p.replicas * p.gpus_per_replica])

# Tenants with identical specs may come as one entry whose `members` lists their ids.
members(id, t) := object.get(t, "members", [id])

# A tenant's guarantee holds in every region it is allowed in: its traffic may land in any of them.
guaranteed_gpus(region) := sum([g |
	some id, t in input.tenants
	region in t.regions.allowed
	g := effective[id].gpus * count(members(id, t))
])

# METADATA
# title: GPU guarantees fit the pools
# description: The GPUs guaranteed to a region's tenants may not exceed that region's GPU capacity.
violations contains v if {
	some region, _ in platform.regions
	guaranteed := guaranteed_gpus(region)
	capacity := gpu_capacity(region)
	guaranteed > capacity
	holders := sort([sprintf("%s=%d", [m, effective[id].gpus]) |
		some id, t in input.tenants
		region in t.regions.allowed
		effective[id].gpus > 0
		some m in members(id, t)
	])
	v := {
		"rule": "gpu-guarantees-exceed-capacity",
		"subject": region,
		"field": "quotas.gpus",
		"message": sprintf("region %s guarantees %d GPUs (%s) but its pools have %d", [region, guaranteed, concat(", ", holders), capacity]),
	}
}

# METADATA
# title: Weight within tier
# description: A tenant may lower its weight below its tier's, never raise it: share is what a tier buys.
violations contains v if {
	some id, t in input.tenants
	w := object.get(t, "weight", null)
	w != null
	w > platform.tiers[t.tier].weight
	v := {
		"rule": "weight-above-tier",
		"subject": id,
		"field": "weight",
		"message": sprintf("weight %v is above tier %s's weight %v; a tenant may lower its weight, not raise it", [w, t.tier, platform.tiers[t.tier].weight]),
	}
}
