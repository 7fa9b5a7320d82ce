# Rego policies (policy/): tests on both engines with a coverage gate, and OPA bundles.
#   make policy-test                 every _test.rego on the embedded engine and on OPA; fails on a failing,
#                                    disagreeing or uncovered rule (report JSON: .fairshare/policy-test.json)
#   make policy-bundle [BUNDLE_PUBLISH=s3://bucket/key]
#                                    .fairshare/policy-bundle.tar.gz (policies + platform data), optionally uploaded
#   make bench-policy                decision latency, policy's share of a compile, and (bench-policy-incremental)
#                                    a one-tenant edit's policy step against a full pass at 10,000 distinct specs
.PHONY: policy-test policy-bundle policy-check bench-policy bench-policy-incremental

POLICY ?= policy
BUNDLE := .fairshare/policy-bundle.tar.gz
BUNDLE_PUBLISH ?=

policy-test: setup
	$(BIN)/fairshare policy test --policy $(POLICY) --json .fairshare/policy-test.json

policy-bundle: setup
	$(BIN)/fairshare policy bundle --policy $(POLICY) --config $(CONFIG) -o $(BUNDLE) \
	  $(if $(BUNDLE_PUBLISH),--publish $(BUNDLE_PUBLISH))

# What CI runs on a pull request: the tenant config, and the chart rendered for every region, through every
# policy (PLAN=plan.json adds a Terraform plan: `terraform show -json`). Exits non-zero on any violation.
# Each region's render is evaluated on its own: a manifest violation names its file, so its region.
PLAN ?=
REGIONS = $(shell $(BIN)/python -c "import yaml; print(' '.join(r['id'] for r in yaml.safe_load(open('$(CONFIG)/regions.yaml'))['regions']))")

policy-check: setup tools
	for r in $(REGIONS); do $(MAKE) --no-print-directory chart-render REGION=$$r >/dev/null || exit 1; done
	$(BIN)/fairshare policy check --policy $(POLICY) --config $(CONFIG) \
	  --manifests $(foreach r,$(REGIONS),.tools/chart/$(r)/manifests.yaml) \
	  $(if $(PLAN),--plan $(PLAN)) --json .fairshare/policy-check.json

bench-policy: setup bench-policy-incremental
	$(BIN)/python -m bench.policy

bench-policy-incremental: setup
	$(BIN)/python -m bench.policy_incremental
