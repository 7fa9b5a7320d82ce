# Compliance (issue 15): the audit trail's cost and offboarding's speed, each against a same-run baseline.
#   make bench-audit     a reload at 10,000 tenants with the audit trail vs without (first load and one edit);
#                        writes bench/results/audit.{json,md}
#   make bench-offboard  one tenant with its own models offboarded among 10,000: its routes gone from Envoy vs a
#                        one-tenant edit served; writes bench/results/offboard.{json,md}
.PHONY: bench-audit bench-offboard

bench-audit: setup
	$(BIN)/python -m bench.audit

bench-offboard: setup
	$(BIN)/python -m bench.offboard
