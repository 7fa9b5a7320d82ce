# A serving region with Terraform (terraform/region, one variable file per region in terraform/regions/).
#   make region-plan REGION=eu-west-1 TF_STATE_BUCKET=my-tfstate     init on the region's remote state, plan,
#                                                                    check it with the policies, save plan + JSON
#                                                                    under .fairshare/terraform/
#   make region-apply REGION=eu-west-1                               apply exactly that saved plan
#   make region-destroy REGION=eu-west-1 TF_STATE_BUCKET=my-tfstate  destroy the region (asks unless AUTO_APPROVE=1)
#   make bench-region                                                plan/apply/destroy timings against moto
#   make local-aws [LOCAL_AWS_PORT=4566]                             a local AWS endpoint (moto, managed IAM policies
#                                                                    loaded, state bucket fairshare-tfstate) in the
#                                                                    background; prints the two variables to export
#   make local-aws-stop                                              stop it (everything it held is gone)
# State: s3://$(TF_STATE_BUCKET)/fairshare/<region>/terraform.tfstate (in TF_STATE_REGION), locked with S3's
# lock file. Tenants and serving pools come from $(CONFIG), validated first.
# AWS_ENDPOINT=http://127.0.0.1:5000 points the state and every AWS call at a moto server instead.
.PHONY: region-required region-init region-forget-plan region-plan region-apply region-destroy bench-region local-aws local-aws-stop region-preflight

TERRAFORM ?= terraform
# No default region for these targets: a forgotten REGION= must not plan, apply or destroy a real one
# (chart.mk's rendering default does not count: `origin` says where the value came from).
REGION ?= us-east-1
REGION_GIVEN := $(filter command line environment environment override override,$(origin REGION))
TF_STATE_BUCKET ?=
TF_STATE_REGION ?= us-east-1
AWS_ENDPOINT ?=
AUTO_APPROVE ?=
# The local provider mirror where there is one (machines without registry access); found only when used.
TF_PLUGIN_DIR ?= $(firstword $(shell find / -maxdepth 3 -type d -name tf-plugins 2>/dev/null))
TF_WORK ?= .fairshare/terraform
LOCAL_AWS_PORT ?= 4566
LOCAL_AWS_DIR ?= .fairshare/local-aws
TF_PLAN := $(TF_WORK)/$(REGION).tfplan
TF = TF_DATA_DIR=$(abspath $(TF_WORK))/$(REGION) TF_CLI_CONFIG_FILE=$(abspath $(TF_WORK))/empty.tfrc TF_IN_AUTOMATION=1 \
	$(TERRAFORM) -chdir=terraform/region
TF_VARS = -var-file=../regions/$(REGION).tfvars -var tenants_dir=$(abspath $(CONFIG))/tenants \
	-var regions_file=$(abspath $(CONFIG))/regions.yaml \
	$(if $(AWS_ENDPOINT),-var aws_endpoint=$(AWS_ENDPOINT) -var force_destroy=true -var secret_recovery_window_days=0 -var kms_deletion_window_days=7)
TF_BACKEND = -backend-config=bucket=$(TF_STATE_BUCKET) -backend-config=key=fairshare/$(REGION)/terraform.tfstate \
	-backend-config=region=$(TF_STATE_REGION) -backend-config=use_lockfile=true \
	$(if $(AWS_ENDPOINT),-backend-config='endpoints={s3="$(AWS_ENDPOINT)"}' -backend-config=use_path_style=true \
	  -backend-config=skip_credentials_validation=true -backend-config=skip_requesting_account_id=true \
	  -backend-config=access_key=test -backend-config=secret_key=test)

local-aws: setup
	$(BIN)/python -m xds_server.local.aws start --port $(LOCAL_AWS_PORT) --dir $(LOCAL_AWS_DIR)

local-aws-stop:
	$(BIN)/python -m xds_server.local.aws stop --dir $(LOCAL_AWS_DIR)

# With AWS_ENDPOINT set, the endpoint must answer, hold AWS's managed IAM policies and the state bucket;
# otherwise the apply would fail halfway (after the network exists). Each problem is named with its fix.
region-required:
	@test -n "$(REGION_GIVEN)" || { echo "error: set REGION=<region> for the region-* targets" \
	  "(regions: $(basename $(notdir $(wildcard terraform/regions/*.tfvars))))"; exit 2; }

region-preflight: region-required
	$(if $(AWS_ENDPOINT),@$(BIN)/python -m xds_server.local.aws check --endpoint $(AWS_ENDPOINT) \
	  $(if $(TF_STATE_BUCKET),--bucket $(TF_STATE_BUCKET)))

region-init: setup region-preflight
	@command -v $(TERRAFORM) >/dev/null || { echo "error: terraform (>= 1.11) is not on PATH"; exit 2; }
	@test -f terraform/regions/$(REGION).tfvars || { echo "error: no terraform/regions/$(REGION).tfvars;" \
	  "a region is one variable file (regions: $(basename $(notdir $(wildcard terraform/regions/*.tfvars))))"; exit 2; }
	@test -n "$(TF_STATE_BUCKET)" || { echo "error: set TF_STATE_BUCKET to the S3 bucket that holds Terraform state" \
	  "(key fairshare/$(REGION)/terraform.tfstate); see docs/region-rollout.md"; exit 2; }
	$(BIN)/fairshare validate --config $(CONFIG)
	@mkdir -p $(TF_WORK) && touch $(TF_WORK)/empty.tfrc
	$(TF) init -input=false -reconfigure $(if $(TF_PLUGIN_DIR),-plugin-dir=$(TF_PLUGIN_DIR)) $(TF_BACKEND)

# A plan the policies refuse (policy/infrastructure, with the tenant config) is not kept, so region-apply
# cannot apply it.
# First: a plan that fails (in the preflight, init or plan itself) must not leave the last one behind for
# region-apply to apply.
region-forget-plan: region-required
	rm -f $(TF_PLAN) $(TF_WORK)/$(REGION).plan.json

region-plan: region-forget-plan region-init
	$(TF) plan -input=false -out=$(abspath $(TF_PLAN)) $(TF_VARS)
	$(TF) show -json $(abspath $(TF_PLAN)) > $(TF_WORK)/$(REGION).plan.json
	$(BIN)/fairshare policy check --config $(CONFIG) --plan $(TF_WORK)/$(REGION).plan.json \
	  || { rm -f $(TF_PLAN); echo "plan refused by policy/infrastructure; nothing saved to apply"; exit 1; }
	@echo "plan saved: $(TF_PLAN) (JSON: $(TF_WORK)/$(REGION).plan.json); apply it with make region-apply REGION=$(REGION)"

region-apply: region-preflight
	@test -f $(TF_PLAN) || { echo "error: no saved plan for $(REGION); run make region-plan REGION=$(REGION) first"; exit 2; }
	$(TF) apply -input=false $(abspath $(TF_PLAN))
	rm -f $(TF_PLAN)
	@echo "region $(REGION) applied; the chart's inputs (role ARNs, model bucket, GPU taint):"
	$(TF) output -json chart_inputs | $(BIN)/python -m json.tool

region-destroy: region-init
	$(TF) destroy -input=false $(if $(AUTO_APPROVE),-auto-approve) $(TF_VARS)
	@echo "region $(REGION) destroyed (state kept at s3://$(TF_STATE_BUCKET)/fairshare/$(REGION)/terraform.tfstate, empty)"

bench-region: setup
	$(BIN)/python -m bench.region
