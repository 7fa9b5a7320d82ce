# METADATA
# title: Tenant decisions
# description: |
#   What the control plane compiles into every layer, one object per tenant, composed from the
#   concerns; and every violation of every concern. One query answers a whole config.
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

violations := [object.union(v, {"concern": c}) |
	some c, vs in {
		"quota": quota.violations,
		"residency": residency.violations,
		"pii": pii.violations,
		"models": models.violations,
	}
	some v in vs
]

adjustments := [object.union(a, {"concern": "quota"}) | some a in quota.adjustments]

result := {"decisions": decisions, "violations": violations, "adjustments": adjustments}
