package fairshare.pii_test

import data.fairshare.pii

# The PII policy reads no platform data: a tenant is its data class and its own additions.
tenant(fields) := object.union({"tier": "pro", "regions": {"home": "us", "allowed": ["us"]}, "models": {}}, fields)

rules(t) := x if {
	x := pii.rules.a with input as {"tenants": {"a": t}}
}

violations(t) := x if {
	x := pii.violations with input as {"tenants": {"a": t}}
}

# Rules per data class

test_default_class_is_personal if {
	rules(tenant({})) == {
		"block": [],
		"redact": ["email", "iban", "ip_address", "national_id", "phone"],
		"pseudonymise": [],
		"unredacted_models": [],
	}
	violations(tenant({})) == set()
}

test_public_class_requires_nothing if {
	rules(tenant({"data_class": "public"})) == {"block": [], "redact": [], "pseudonymise": [], "unredacted_models": []}
}

test_internal_class_redacts_contact_details if {
	rules(tenant({"data_class": "internal"})) == {"block": [], "redact": ["email", "phone"], "pseudonymise": [], "unredacted_models": []}
}

test_personal_class_matches_the_default if {
	rules(tenant({"data_class": "personal"})) == rules(tenant({}))
}

test_payment_class_blocks_card_numbers if {
	r := rules(tenant({"data_class": "payment"}))
	r.block == ["credit_card"]
	r.redact == ["email", "iban", "ip_address", "national_id", "phone"]
}

test_health_class_blocks_national_ids_and_redacts_cards if {
	r := rules(tenant({"data_class": "health"}))
	r.block == ["national_id"]
	r.redact == ["credit_card", "email", "iban", "ip_address", "phone"]
}

# Tenant additions

test_tenant_additions_are_added_to_its_class if {
	r := rules(tenant({"data_class": "internal", "pii": {"redact": ["iban"], "block": ["ip_address"]}}))
	r.redact == ["email", "iban", "phone"]
	r.block == ["ip_address"]
}

test_tenant_cannot_remove_what_its_class_requires if {
	# Listing fewer entities than the class requires changes nothing: additions only.
	rules(tenant({"data_class": "payment", "pii": {"redact": ["email"]}})) == rules(tenant({"data_class": "payment"}))
}

test_block_wins_over_redact if {
	# personal redacts email; the tenant blocks it: blocked, and no longer in the redact list.
	r := rules(tenant({"pii": {"block": ["email"]}}))
	r.block == ["email"]
	r.redact == ["iban", "ip_address", "national_id", "phone"]
}

test_block_by_class_wins_over_tenant_redact if {
	r := rules(tenant({"data_class": "payment", "pii": {"redact": ["credit_card"]}}))
	r.block == ["credit_card"]
	not "credit_card" in r.redact
}

# Violations

test_unknown_data_class_is_denied if {
	t := tenant({"data_class": "secret"})
	[v] := [x | some x in violations(t)]
	v.rule == "unknown-data-class"
	v.subject == "a"
	v.field == "data_class"
	v.message == `unknown data class "secret"; known classes: health, internal, payment, personal, public`

	# And no rules are decided for it: nothing is compiled from a class the policy does not know.
	not rules(t)
}

test_unknown_entity_is_denied if {
	t := tenant({"pii": {"redact": ["email", "passport"], "block": ["dna"], "pseudonymise": ["face"]}})
	{[v.rule, v.field] | some v in violations(t)} == {
		["unknown-pii-entity", "pii.redact[1]"],
		["unknown-pii-entity", "pii.block[0]"],
		["unknown-pii-entity", "pii.pseudonymise[0]"],
	}
	some v in violations(t)
	v.field == "pii.redact[1]"
	v.message == `unknown PII entity "passport"; known entities: credit_card, email, iban, ip_address, national_id, phone`
}

test_known_entities_pass if {
	violations(tenant({"pii": {"redact": ["email", "phone", "credit_card"], "block": ["iban", "national_id", "ip_address"]}})) == set()
}

test_unredacted_input_to_untrusted_model_is_denied if {
	t := tenant({"pii": {"unredacted_models": ["embedder"]}})
	[v] := [x | some x in violations(t)]
	v.rule == "unredacted-input-to-untrusted-model"
	v.subject == "a"
	v.field == "pii.unredacted_models[0]"
	v.message == "asks to send unredacted input to model embedder, which the PII policy does not trust with raw personal data"
	rules(t).unredacted_models == []
}

test_unredacted_input_to_trusted_model_passes if {
	t := tenant({"pii": {"unredacted_models": ["enclave", "embedder"]}})
	r := pii.rules.a with input as {"tenants": {"a": t}} with pii.unredacted_allowed as {"enclave"}
	r.unredacted_models == ["enclave"]
	vs := pii.violations with input as {"tenants": {"a": t}} with pii.unredacted_allowed as {"enclave"}
	{v.field | some v in vs} == {"pii.unredacted_models[1]"}
}

# Pseudonymisation

test_pseudonymise_replaces_what_the_class_redacts if {
	# personal redacts email and phone; the tenant asks for keyed pseudonyms of email instead.
	r := rules(tenant({"pii": {"pseudonymise": ["email"]}}))
	r.pseudonymise == ["email"]
	r.redact == ["iban", "ip_address", "national_id", "phone"]
	violations(tenant({"pii": {"pseudonymise": ["email"]}})) == set()
}

test_pseudonymise_adds_to_a_class_that_requires_nothing if {
	r := rules(tenant({"data_class": "public", "pii": {"pseudonymise": ["email", "ip_address"]}}))
	r.pseudonymise == ["email", "ip_address"]
	r.redact == []
}

test_a_blocked_type_cannot_be_pseudonymised if {
	t := tenant({"data_class": "payment", "pii": {"pseudonymise": ["email", "credit_card"]}})
	[v] := [x | some x in violations(t)]
	v.rule == "pseudonymise-not-allowed"
	v.subject == "a"
	v.field == "pii.pseudonymise[1]"
	v.message == "asks to pseudonymise credit_card, which is blocked for this tenant (data class payment); a blocked type cannot be pseudonymised"

	# And it stays blocked; the allowed one is pseudonymised.
	r := rules(t)
	r.block == ["credit_card"]
	r.pseudonymise == ["email"]
}

test_a_type_the_tenant_blocks_cannot_be_pseudonymised if {
	t := tenant({"pii": {"block": ["iban"], "pseudonymise": ["iban"]}})
	{v.rule | some v in violations(t)} == {"pseudonymise-not-allowed"}
	rules(t).pseudonymise == []
	rules(t).block == ["iban"]
}
