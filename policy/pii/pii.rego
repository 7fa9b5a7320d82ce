# METADATA
# title: PII handling
# description: |
#   Which personal-data entities a tenant's requests must have redacted (replaced before the model or
#   a log sees them), pseudonymised (replaced by the tenant's keyed pseudonym, stable for the tenant and
#   unlinkable across tenants) or blocked (refused), from the tenant's data class plus its own additions,
#   and which models may receive unredacted input. A tenant can add protections, never remove them;
#   pseudonymising a type its class redacts is allowed where the class says so (never a blocked type).
package fairshare.pii

entities := {"email", "phone", "credit_card", "iban", "national_id", "ip_address"}

# What each data class requires. "personal" (GDPR personal data) is the default: a tenant that says
# nothing about its data is treated as handling personal data.
classes := {
	"public": {"redact": set(), "block": set()},
	"internal": {"redact": {"email", "phone"}, "block": set()},
	"personal": {"redact": {"email", "phone", "ip_address", "iban", "national_id"}, "block": set()},
	"payment": {"redact": {"email", "phone", "ip_address", "iban", "national_id"}, "block": {"credit_card"}},
	"health": {"redact": {"email", "phone", "ip_address", "iban", "credit_card"}, "block": {"national_id"}},
}

default_class := "personal"

# Types each class lets a tenant pseudonymise instead of redact. A keyed pseudonym is still personal
# data (GDPR Art. 4(5)), but no one without the tenant's key can reverse or link it. Blocked types never.
pseudonymisable := {
	"public": entities,
	"internal": entities,
	"personal": entities,
	"payment": entities - {"credit_card"},
	"health": entities - {"national_id"},
}

# Models trusted with raw personal data (e.g. one running inside the tenant's own enclave). None by default.
unredacted_allowed := set()

data_class(t) := object.get(t, "data_class", default_class)

tenant_list(t, key) := {e | some e in object.get(object.get(t, "pii", {}), key, [])}

# METADATA
# title: Effective PII rules
# description: Blocked wins over redacted; redaction applies to every model not trusted with raw input.
rules[id] := {
	"block": sort([e | some e in block]),
	"redact": sort([e | some e in redact]),
	"pseudonymise": sort([e | some e in pseudonymise]),
	"unredacted_models": sort([m | some m in tenant_list(t, "unredacted_models"); m in unredacted_allowed]),
} if {
	some id, t in input.tenants
	block := classes[data_class(t)].block | tenant_list(t, "block")
	pseudonymise := (tenant_list(t, "pseudonymise") & pseudonymisable[data_class(t)]) - block
	redact := ((classes[data_class(t)].redact | tenant_list(t, "redact")) - block) - pseudonymise
}

# METADATA
# title: Known data class
# description: A tenant's data class must be one the policy defines.
violations contains v if {
	some id, t in input.tenants
	not classes[data_class(t)]
	v := {
		"rule": "unknown-data-class",
		"subject": id,
		"field": "data_class",
		"message": sprintf("unknown data class %q; known classes: %s", [data_class(t), concat(", ", sort([c | some c, _ in classes]))]),
	}
}

# METADATA
# title: Known entity types
# description: A tenant may only name entity types the runtime can find.
violations contains v if {
	some id, t in input.tenants
	some key in ["redact", "block", "pseudonymise"]
	some i, e in object.get(object.get(t, "pii", {}), key, [])
	not e in entities
	v := {
		"rule": "unknown-pii-entity",
		"subject": id,
		"field": sprintf("pii.%s[%d]", [key, i]),
		"message": sprintf("unknown PII entity %q; known entities: %s", [e, concat(", ", sort([x | some x in entities]))]),
	}
}

# METADATA
# title: Unredacted input only to trusted models
# description: No model receives a tenant's raw personal data unless the policy trusts it.
violations contains v if {
	some id, t in input.tenants
	some i, m in object.get(object.get(t, "pii", {}), "unredacted_models", [])
	not m in unredacted_allowed
	v := {
		"rule": "unredacted-input-to-untrusted-model",
		"subject": id,
		"field": sprintf("pii.unredacted_models[%d]", [i]),
		"message": sprintf("asks to send unredacted input to model %s, which the PII policy does not trust with raw personal data", [m]),
	}
}

# METADATA
# title: Pseudonymise only what the data class allows
# description: A type the tenant's class or the tenant itself blocks cannot be pseudonymised instead.
violations contains v if {
	some id, t in input.tenants
	classes[data_class(t)]
	some i, e in object.get(object.get(t, "pii", {}), "pseudonymise", [])
	e in entities
	not e in pseudonymisable_for(t)
	v := {
		"rule": "pseudonymise-not-allowed",
		"subject": id,
		"field": sprintf("pii.pseudonymise[%d]", [i]),
		"message": sprintf("asks to pseudonymise %s, which is blocked for this tenant (data class %s); a blocked type cannot be pseudonymised", [e, data_class(t)]),
	}
}

pseudonymisable_for(t) := (pseudonymisable[data_class(t)] - classes[data_class(t)].block) - tenant_list(t, "block")
