# METADATA
# title: Tenant decisions
# description: |
#   What the control plane compiles into every layer, one object per tenant, composed from the
#   concerns; and every violation of every concern. One query (`result`) answers a whole config;
#   `entries` and `fleet` are the same answers in two steps, so that an edit re-evaluates only the
#   tenants it changed.
package fairshare.tenant

import data.fairshare.models
import data.fairshare.pii
import data.fairshare.quota
import data.fairshare.residency

# Parts are bound in the body: regorus drops the whole object when a head value is undefined for one
# tenant (no PII rules for an unknown data class), where OPA leaves out only that tenant.
decisions[id] := {"weight": weight, "quotas": quotas, "routes": routes, "pii": rules, "own_routes": own} if {
	some id, _ in input.tenants
	weight := quota.weight[id]
	quotas := quota.effective[id]
	routes := residency.routes[id]
	rules := pii.rules[id]
	own := models.own_routes[id]
}

# Each entry's own violations, of every concern: about that entry alone.
entry_violations := [object.union(v, {"concern": c}) |
	some c, vs in {
		"quota": quota.violations,
		"residency": residency.violations,
		"pii": pii.violations,
		"models": models.violations,
	}
	some v in vs
]

adjustments := [object.union(a, {"concern": "quota"}) | some a in quota.adjustments]

# What depends on each entry alone (and the platform): the control plane asks this for the tenants
# whose spec changed and keeps the answers of the rest (xds_server/policy/decide.py). `claims` is what
# each entry contributes to the fleet-wide checks.
entries := {"decisions": decisions, "violations": entry_violations, "adjustments": adjustments, "claims": quota.claims}

# What depends on every tenant, read only from their claims (input.claims: id -> claim with `members`).
fleet := [object.union(v, {"concern": "quota"}) | some v in quota.fleet_violations]

# The whole fleet in one query, as one evaluation: each entry's answers, then the fleet-wide checks
# over their claims. What the control plane decides is always equal to this (tests/policy).
result := {"decisions": decisions, "violations": array.concat(entry_violations, checked), "adjustments": adjustments} if {
	claims := quota.claims_of_tenants
	checked := fleet with input as {"claims": claims}
}
