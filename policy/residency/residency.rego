# METADATA
# title: Data residency
# description: |
#   A tenant's traffic and data stay in the regions it allows. Routes are built per region from the
#   versions deployed there; a split that would have to send some of a tenant's traffic to a version
#   not deployed in one of its regions is denied rather than routed elsewhere.
package fairshare.residency

import data.fairshare.platform

# Which versions of each model run in each region, computed once per evaluation.
deployed[region][model] := {v |
	some v, mv in platform.models[model].versions
	region in mv.regions
} if {
	some region, _ in platform.regions
	some model, _ in platform.models
}

# The model versions a tenant's route may hold in a region: granted, deployed there, and the region
# is one the tenant allows. A weight-0 version deployed there stays addressable by its explicit path.
routes[id] := {region: {model: versions |
	some model, grant in t.models
	here := deployed[region][model]
	versions := sort([v | some v, _ in grant.split; here[v]])
} |
	some region in t.regions.allowed
} if {
	some id, t in input.tenants
}

# METADATA
# title: Splits stay inside the allowed regions
# description: Every version with traffic in a tenant's split must be deployed in each region the tenant allows.
violations contains v if {
	some id, t in input.tenants
	some model, grant in t.models
	some version, pct in grant.split
	pct > 0
	deployed := platform.models[model].versions[version].regions
	missing := sort([r | some r in t.regions.allowed; not r in deployed])
	count(missing) > 0
	v := {
		"rule": "split-outside-allowed-regions",
		"subject": id,
		"field": sprintf("models.%s.split.%s", [model, version]),
		"message": sprintf("%s:%s takes %d%% of the tenant's traffic but is not deployed in %s, where the tenant is served and its data must stay (it runs only in %s)", [model, version, pct, concat(", ", missing), concat(", ", sort(deployed))]),
	}
}

# METADATA
# title: Home region is allowed
# description: A tenant's home region must be one of its allowed regions.
violations contains v if {
	some id, t in input.tenants
	not t.regions.home in t.regions.allowed
	v := {
		"rule": "home-outside-allowed-regions",
		"subject": id,
		"field": "regions.home",
		"message": sprintf("home region %s is not among the allowed regions %s", [t.regions.home, concat(", ", sort(t.regions.allowed))]),
	}
}

# METADATA
# title: Failover stays inside the allowed set
# description: A tenant may fail over only to regions it allows.
violations contains v if {
	some id, t in input.tenants
	some i, r in object.get(t.regions, "failover", [])
	not r in t.regions.allowed
	v := {
		"rule": "failover-outside-allowed-regions",
		"subject": id,
		"field": sprintf("regions.failover[%d]", [i]),
		"message": sprintf("may not fail over to %s: the tenant's data may stay only in %s", [r, concat(", ", sort(t.regions.allowed))]),
	}
}
