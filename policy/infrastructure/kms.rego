# METADATA
# title: KMS keys are used only through their service
# description: |
#   Every policy statement that allows using a KMS key (encrypt, decrypt, re-encrypt, data keys, grants)
#   must hold only through an AWS service (a kms:ViaService condition), so a principal that may read a
#   bucket or a secret cannot take the key and decrypt with it directly; and every key needs its own key
#   policy (the default one gives the account's IAM full use of the key, with no service condition).
package fairshare.infrastructure

# What using a key is; administering it (describe, rotate, tag, schedule deletion) is not.
kms_use_actions := {"kms:encrypt", "kms:decrypt", "kms:reencryptfrom", "kms:reencryptto", "kms:generatedatakey", "kms:generatedatakeywithoutplaintext", "kms:generatedatakeypair", "kms:generatedatakeypairwithoutplaintext", "kms:creategrant"}

policy_attributes := {
	"aws_kms_key": "policy",
	"aws_iam_role_policy": "policy",
	"aws_iam_policy": "policy",
	"aws_iam_user_policy": "policy",
	"aws_iam_group_policy": "policy",
	"aws_kms_key_policy": "policy",
}

# [address, statement label, actions, condition keys] of every allowing statement in the plan.
statements contains [rc.address, label, actions, keys] if {
	some rc in live
	attribute := policy_attributes[rc.type]
	document := json.unmarshal(rc.change.after[attribute])
	some i, s in as_array(document.Statement)
	object.get(s, "Effect", "Allow") == "Allow"
	label := object.get(s, "Sid", sprintf("statement %d", [i]))
	actions := {lower(a) | some a in as_array(object.get(s, "Action", []))}
	keys := {lower(k) | some _, by_key in object.get(s, "Condition", {}); some k, _ in by_key}
}

# A policy document that depends on values known only after apply is read then; its statements are in
# the plan already (actions and condition variables are constants).
statements contains [rc.address, label, actions, keys] if {
	some rc in input.resource_changes
	rc.mode == "data"
	rc.type == "aws_iam_policy_document"
	some i, s in object.get(rc.change.after, "statement", [])
	s.effect in {null, "Allow"}
	label := statement_label(s, i)
	actions := {lower(a) | some a in object.get(s, "actions", [])}
	keys := {lower(c.variable) | some c in object.get(s, "condition", []); is_string(c.variable)}
}

statement_label(s, _) := s.sid if is_string(s.sid)

statement_label(s, i) := sprintf("statement %d", [i]) if not is_string(s.sid)

as_array(x) := x if is_array(x)

as_array(x) := [x] if not is_array(x)

uses_kms(actions) if {
	some a in actions
	some u in kms_use_actions
	glob.match(a, [], u)
}

# METADATA
# title: KMS use holds only through a service
# description: An Allow statement with a KMS use action (or a wildcard covering one) needs a kms:ViaService condition; an aws_kms_key needs its own policy.
violations contains v if {
	some [address, label, actions, keys] in statements
	uses_kms(actions)
	not "kms:viaservice" in keys
	v := {
		"rule": "kms-use-without-via-service",
		"subject": address,
		"field": sprintf("policy.%s.Condition", [label]),
		"message": sprintf("%s (%s) allows %s without a kms:ViaService condition; a principal it covers could decrypt the key's data outside the service that owns it", [address, label, concat(", ", sort(actions))]),
	}
}

violations contains v if {
	some rc in live
	rc.type == "aws_kms_key"
	not key_policy_given(rc)
	v := {
		"rule": "kms-use-without-via-service",
		"subject": rc.address,
		"field": "policy",
		"message": sprintf("KMS key %s has no key policy of its own; the default one lets every principal of the account that IAM allows use the key directly (kms:* with no kms:ViaService condition)", [rc.address]),
	}
}

key_policy_given(rc) if {
	is_string(rc.change.after.policy)
	rc.change.after.policy != ""
}

# A policy built from values known only after apply (its document is read then, and checked above).
key_policy_given(rc) if rc.change.after_unknown.policy == true
