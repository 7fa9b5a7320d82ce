package fairshare.retention_test

import data.fairshare.retention

test_a_file_keeps_the_shortest_period_of_its_tenants if {
	r := retention.result with input as {"logs": {"envoy.log": {"tenants": [{"data_class": "internal"}, {"data_class": "health"}]}}}
	r.keep_days["envoy.log"] == 14
}

test_a_tenant_without_a_class_is_personal if {
	r := retention.result with input as {"logs": {"rt.log": {"tenants": [{}]}}}
	r.keep_days["rt.log"] == 30
}

test_public_and_internal_alone_keep_longer if {
	r := retention.result with input as {"logs": {"a.log": {"tenants": [{"data_class": "public"}, {"data_class": "internal"}]}}}
	r.keep_days["a.log"] == 90
	count(r.violations) == 0
}

test_a_file_with_no_tenant_lines_is_operational if {
	r := retention.result with input as {"logs": {"control-plane.log": {"tenants": []}}}
	r.keep_days["control-plane.log"] == 90
}

test_an_unknown_class_gets_the_shortest_period_and_a_violation if {
	r := retention.result with input as {"logs": {"x.log": {"tenants": [{"data_class": "secret-stuff"}, {"data_class": "public"}]}}}
	r.keep_days["x.log"] == 14
	some v in r.violations
	v.rule == "unknown-retention-class"
	v.subject == "x.log"
}

test_audit_records_outlive_every_access_log if {
	r := retention.result with input as {"logs": {}}
	every d in retention.periods {
		r.audit_days > d
	}
}
