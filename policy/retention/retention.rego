# METADATA
# title: Retention
# description: |
#   How long the platform keeps each class of record it writes, in days. Access-log lines name a
#   tenant and the outcome of its request (never a payload); they are kept for the period of the
#   tenant's data class. A log file holds lines of many tenants, so it is kept for the shortest period
#   among the data classes it holds. Audit records hold tenant ids and decisions only, and are kept
#   longest (SOC 2 change-management evidence).
package fairshare.retention

# Days an access-log line naming a tenant of each data class (policy/pii's classes) is kept.
periods := {
	"public": 90,
	"internal": 90,
	"personal": 30,
	"payment": 30,
	"health": 14,
}

default_class := "personal"

# Operational lines that name no tenant (start-up, reloads): kept as long as the longest access period.
operational_days := 90

audit_days := 400

data_class(t) := object.get(t, "data_class", default_class)

# The shortest period any known class asks for: what an unknown class gets, so a typo never keeps longer.
shortest := min({d | some d in periods})

class_days(c) := periods[c]

class_days(c) := shortest if not periods[c]

# METADATA
# title: Days a log file is kept
# description: The shortest period among the data classes of the tenants whose lines it may hold.
keep_days[name] := min({class_days(data_class(t)) | some t in input.logs[name].tenants}) if {
	some name, log in input.logs
	count(log.tenants) > 0
}

keep_days[name] := operational_days if {
	some name, log in input.logs
	count(log.tenants) == 0
}

# METADATA
# title: Known data class
# description: A tenant's data class must have a retention period.
violations contains v if {
	some name, log in input.logs
	some t in log.tenants
	not periods[data_class(t)]
	v := {
		"rule": "unknown-retention-class",
		"subject": name,
		"message": sprintf("data class %q has no retention period (known: %s); its lines get the shortest, %d days", [data_class(t), concat(", ", sort([c | some c, _ in periods])), shortest]),
	}
}

result := {"keep_days": keep_days, "audit_days": audit_days, "violations": violations}
