# Cluster add-ons (helm/fairshare-cluster-addons): the AWS Load Balancer Controller and Cluster Autoscaler,
# upstream charts vendored and pinned, with values from Terraform (terraform output cluster_addons_values).
#   make addons-values REGION=eu-west-1    after make region-apply: Terraform's values -> .tools/chart/<region>/addons.json
#   make addons-lint REGION=eu-west-1      helm lint --strict with them, alone and with every example
#   make addons-render REGION=eu-west-1 [ADDONS_VALUES=helm/fairshare-cluster-addons/examples/production.yaml]
#   make chart-install REGION=eu-west-1 [ADDONS_VALUES=...] [CHART_VALUES=...]
#                                          the whole stack on kubectl's current context, in order: the add-ons
#                                          into kube-system (waiting until the controllers run), then the
#                                          fairshare chart, whose gateway Service the Load Balancer Controller
#                                          turns into the NLB
# ADDONS_TF_VALUES=<file> takes Terraform's values from that file (`terraform output -json cluster_addons_values`)
# instead of this checkout's Terraform working dir.
.PHONY: addons-values addons-lint addons-render addons-install chart-install

ADDONS_CHART := helm/fairshare-cluster-addons
ADDONS_VALUES ?=
ADDONS_TF_VALUES ?= $(CHART_OUT)/addons.json
KUBECTL ?= kubectl
# Terraform's values are read from the region's working dir only when no file was given.
ADDONS_INPUT := $(if $(filter $(CHART_OUT)/addons.json,$(ADDONS_TF_VALUES)),addons-values)
ADDONS_ARGS = --namespace kube-system -f $(ADDONS_TF_VALUES) $(if $(ADDONS_VALUES),-f $(ADDONS_VALUES))

addons-values:
	@test -d $(TF_WORK)/$(REGION) || { echo "error: no Terraform working dir for $(REGION) ($(TF_WORK)/$(REGION)):" \
	  "run make region-plan and region-apply REGION=$(REGION) first, or pass" \
	  "ADDONS_TF_VALUES=<file of terraform output -json cluster_addons_values>"; exit 2; }
	@mkdir -p $(CHART_OUT)
	$(TF) output -json cluster_addons_values > $(CHART_OUT)/addons.json
	@echo "add-on values from Terraform: $(CHART_OUT)/addons.json"

addons-lint: tools $(ADDONS_INPUT)
	$(HELM) lint --strict $(ADDONS_CHART) $(ADDONS_ARGS)
	for f in $(ADDONS_CHART)/examples/*.yaml; do $(HELM) lint --strict $(ADDONS_CHART) $(ADDONS_ARGS) -f $$f || exit 1; done

addons-render: tools $(ADDONS_INPUT)
	@mkdir -p $(CHART_OUT)
	$(HELM) template cluster-addons $(ADDONS_CHART) $(ADDONS_ARGS) --include-crds > $(CHART_OUT)/addons-manifests.yaml
	@echo "rendered $(CHART_OUT)/addons-manifests.yaml"

# helm upgrade never updates a chart's crds/, so the controller's CRDs are applied first (a no-op when current).
addons-install: tools $(ADDONS_INPUT)
	$(KUBECTL) apply --server-side --force-conflicts \
	  -f $(ADDONS_CHART)/charts/aws-load-balancer-controller/crds/crds.yaml \
	  -f $(ADDONS_CHART)/charts/aws-load-balancer-controller/crds/gateway-crds.yaml
	$(HELM) upgrade --install cluster-addons $(ADDONS_CHART) $(ADDONS_ARGS) --wait --timeout 10m

# The add-ons first: without the Load Balancer Controller running, the gateway's LoadBalancer Service gets no
# NLB (nothing else reconciles its aws-load-balancer-type: external annotation).
chart-install: addons-install setup
	$(BIN)/fairshare chart-values --config $(CONFIG) --region $(REGION) -o $(CHART_OUT)/values.yaml
	$(HELM) upgrade --install fairshare $(CHART) --namespace fairshare --create-namespace \
	  -f $(CHART_OUT)/values.yaml $(if $(CHART_VALUES),-f $(CHART_VALUES)) --wait --timeout 15m
