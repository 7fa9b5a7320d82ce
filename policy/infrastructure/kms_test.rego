package fairshare.infrastructure_test

# Tests of kms.rego, sharing infrastructure_test.rego's builders (same package).

via_s3 := {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}

statement(actions, condition) := {"Sid": "UseKey", "Effect": "Allow", "Action": actions, "Resource": "*", "Condition": condition}

role_policy(statements) := change("module.iam.aws_iam_role_policy.runtime", "aws_iam_role_policy", {"policy": json.marshal({"Version": "2012-10-17", "Statement": statements})})

key(policy) := change("module.iam.aws_kms_key.models", "aws_kms_key", {"policy": policy})

key_policy := json.marshal({"Statement": [
	{"Sid": "Admin", "Effect": "Allow", "Action": ["kms:Describe*", "kms:ScheduleKeyDeletion"], "Resource": "*"},
	statement(["kms:Decrypt", "kms:GenerateDataKey"], via_s3),
]})

kms_rules(changes) := {v.rule | some v in data.fairshare.infrastructure.violations with input as plan(changes)}

test_a_key_and_grants_through_a_service_pass if {
	kms_rules([key(key_policy), role_policy([statement(["kms:Decrypt"], via_s3)])]) == set()
}

test_a_decrypt_grant_without_via_service_is_denied if {
	vs := data.fairshare.infrastructure.violations with input as plan([role_policy([statement(["kms:Decrypt"], {})])])
	count(vs) == 1
	some v in vs
	v.rule == "kms-use-without-via-service"
	v.subject == "module.iam.aws_iam_role_policy.runtime"
	v.field == "policy.UseKey.Condition"
	contains(v.message, "kms:decrypt")
}

test_another_condition_does_not_count if {
	other := {"StringEquals": {"aws:SourceAccount": "1"}}
	kms_rules([role_policy([statement("kms:GenerateDataKey", other)])]) == {"kms-use-without-via-service"}
}

test_a_wildcard_covering_use_is_denied if {
	kms_rules([role_policy([{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}])]) == {"kms-use-without-via-service"}
}

test_an_admin_wildcard_covering_create_grant_is_denied if {
	kms_rules([key(json.marshal({"Statement": [{"Sid": "Admin", "Effect": "Allow", "Action": ["kms:Create*", "kms:Describe*"], "Resource": "*"}]}))]) == {"kms-use-without-via-service"}
}

test_an_unnamed_statement_is_named_by_its_index if {
	some v in data.fairshare.infrastructure.violations with input as plan([role_policy([{"Effect": "Allow", "Action": ["kms:Encrypt"], "Resource": "*"}])])
	v.field == "policy.statement 0.Condition"
}

test_administering_a_key_needs_no_condition if {
	kms_rules([role_policy([{"Effect": "Allow", "Action": ["kms:DescribeKey", "kms:EnableKeyRotation"], "Resource": "*"}])]) == set()
}

test_a_deny_statement_needs_no_condition if {
	kms_rules([role_policy([{"Effect": "Deny", "Action": ["kms:Decrypt"], "Resource": "*"}])]) == set()
}

test_a_key_policy_without_via_service_is_denied if {
	wide := json.marshal({"Statement": [{"Sid": "Everyone", "Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
	some v in data.fairshare.infrastructure.violations with input as plan([key(wide)])
	v.rule == "kms-use-without-via-service"
	v.field == "policy.Everyone.Condition"
}

test_a_key_without_its_own_policy_is_denied if {
	vs := data.fairshare.infrastructure.violations with input as plan([change("module.iam.aws_kms_key.models", "aws_kms_key", {})])
	count(vs) == 1
	some v in vs
	v.field == "policy"
	contains(v.message, "no key policy of its own")
}

test_a_key_policy_known_only_after_apply_counts if {
	later := {"address": "module.iam.aws_kms_key.models", "type": "aws_kms_key", "change": {"actions": ["create"], "after": {}, "after_unknown": {"policy": true}}}
	kms_rules([later]) == set()
}

# A document read at apply time (it names a key created in the plan): its statements are in the plan.
document(statements) := {"address": "module.iam.data.aws_iam_policy_document.runtime", "mode": "data", "type": "aws_iam_policy_document", "change": {"actions": ["read"], "after": {"statement": statements}, "after_unknown": {"json": true}}}

test_a_policy_document_with_via_service_passes if {
	kms_rules([document([{"sid": "Decrypt", "effect": "Allow", "actions": ["kms:Decrypt"], "condition": [{"test": "StringEquals", "variable": "kms:ViaService", "values": ["secretsmanager.eu-west-1.amazonaws.com"]}]}])]) == set()
}

test_a_policy_document_without_via_service_is_denied if {
	vs := data.fairshare.infrastructure.violations with input as plan([document([{"sid": "Decrypt", "effect": "Allow", "actions": ["kms:Decrypt"], "condition": []}])])
	count(vs) == 1
	some v in vs
	v.subject == "module.iam.data.aws_iam_policy_document.runtime"
	v.field == "policy.Decrypt.Condition"
}

test_an_unnamed_document_statement_with_the_default_effect_is_checked if {
	some v in data.fairshare.infrastructure.violations with input as plan([document([{"sid": null, "effect": null, "actions": ["kms:ReEncryptFrom"]}])])
	v.field == "policy.statement 0.Condition"
}
