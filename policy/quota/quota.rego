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

# METADATA
# title: GPU claims
# description: |
#   What a tenant's entry promises in GPUs, and where: all that the fleet-wide guarantee check needs
#   of it. Each entry's claim depends on that entry alone, so the control plane keeps it with the
#   entry's decision and re-evaluates only changed tenants (xds_server/policy/decide.py).
claims[id] := {"gpus": g, "regions": sort(t.regions.allowed)} if {
	some id, t in input.tenants
	g := effective[id].gpus
}

# The claims of input.tenants as the fleet-wide rules read them, each with the tenants it stands for:
# tenants with identical specs may come as one entry whose `members` lists their ids.
claims_of_tenants := {id: object.union(c, {"members": object.get(input.tenants[id], "members", [id])}) |
	some id, c in claims
}

# A tenant's guarantee holds in every region it is allowed in: its traffic may land in any of them.
# The fleet-wide rules read input.claims: id -> claim with `members`, the tenants it stands for
# (tenants whose claims are alike come as one).
guaranteed_gpus(region) := sum([n |
	some c in input.claims
	region in c.regions
	n := c.gpus * count(c.members)
])

# METADATA
# title: GPU guarantees fit the pools
# description: The GPUs guaranteed to a region's tenants may not exceed that region's GPU capacity.
fleet_violations contains v if {
	some region, _ in platform.regions
	guaranteed := guaranteed_gpus(region)
	capacity := gpu_capacity(region)
	guaranteed > capacity

	# Largest guarantee first, then by id: a message names the first few ({subjects} is filled in with
	# them and a count by xds_server/listing.py), the violation's `subjects` keeps them all.
	ranked := sort([[0 - c.gpus, m] |
		some c in input.claims
		region in c.regions
		c.gpus > 0
		some m in c.members
	])
	v := {
		"rule": "gpu-guarantees-exceed-capacity",
		"subject": region,
		# regions.yaml's field: the region's pools hold the capacity; the tenants' quotas.gpus the guarantees.
		"field": "pools",
		"message": sprintf(
			"region %s guarantees %d GPUs ({subjects}) but its pools have %d: add GPU pool replicas in regions.yaml or lower tenants' quotas.gpus",
			[region, guaranteed, capacity],
		),
		"subjects": [sprintf("%s=%d", [m, 0 - n]) | some [n, m] in ranked],
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
