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
#   make chart-inputs REGION=eu-west-1    after make region-apply: Terraform's chart_inputs (the IRSA role ARNs,
#                                          the tenants' key prefix) -> .tools/chart/<region>/chart-inputs.json
# ADDONS_TF_VALUES=<file> takes Terraform's values from that file (`terraform output -json cluster_addons_values`)
# instead of this checkout's Terraform working dir; CHART_TF_INPUTS=<file> likewise for chart_inputs.
# The platform chart needs cert-manager (docs/helm.md, "Prerequisite: cert-manager") unless its values turn
# tls.upstream.certManager off: chart-install checks its CRDs before installing anything of the platform.
.PHONY: addons-values addons-lint addons-render addons-install chart-inputs chart-preflight chart-install

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

chart-inputs:
	@test -d $(TF_WORK)/$(REGION) || { echo "error: no Terraform working dir for $(REGION) ($(TF_WORK)/$(REGION)):" \
	  "run make region-plan and region-apply REGION=$(REGION) first, or pass" \
	  "CHART_TF_INPUTS=<file of terraform output -json chart_inputs>"; exit 2; }
	@mkdir -p $(CHART_OUT)
	$(TF) output -json chart_inputs > $(CHART_OUT)/chart-inputs.json
	@echo "chart inputs from Terraform: $(CHART_OUT)/chart-inputs.json"

CHART_TF_INPUTS ?= $(CHART_OUT)/chart-inputs.json
CHART_INPUTS := $(if $(filter $(CHART_OUT)/chart-inputs.json,$(CHART_TF_INPUTS)),chart-inputs)
CERT_MANAGER_VERSION := v1.20.0
CERT_MANAGER_CRDS := certificates.cert-manager.io issuers.cert-manager.io
# The spec, then Terraform's identities (the roles' ARNs, the key prefix), then the operator's file (wins).
CHART_INSTALL_VALUES = -f $(CHART_OUT)/values.yaml -f $(CHART_OUT)/terraform.yaml $(if $(CHART_VALUES),-f $(CHART_VALUES))

# What the platform's install needs, checked before anything is installed: the spec, Terraform's identities,
# and, when the release holds cert-manager's Certificates, its CRDs in the cluster (else helm fails half-way
# through with "no matches for kind Certificate in version cert-manager.io/v1").
chart-preflight: setup tools $(CHART_INPUTS)
	$(BIN)/fairshare chart-values --config $(CONFIG) --region $(REGION) -o $(CHART_OUT)/values.yaml
	$(BIN)/python -m xds_server.deploy.chart_inputs $(CHART_TF_INPUTS) --region $(REGION) -o $(CHART_OUT)/terraform.yaml
	@if $(HELM) template fairshare $(CHART) --namespace fairshare $(CHART_INSTALL_VALUES) \
	    | grep -q '^apiVersion: cert-manager.io/'; then \
	  $(KUBECTL) get crd $(CERT_MANAGER_CRDS) >/dev/null || { \
	    echo "error: the release needs cert-manager (its Certificates and Issuers: tls.upstream.certManager), but" \
	      "this cluster lacks its CRDs ($(CERT_MANAGER_CRDS)). Install cert-manager $(CERT_MANAGER_VERSION) first" \
	      "(docs/helm.md, 'Prerequisite: cert-manager'), or bring your own Secrets with" \
	      "tls.upstream.certManager.enabled=false." >&2; exit 2; }; fi

# The add-ons first: without the Load Balancer Controller running, the gateway's LoadBalancer Service gets no
# NLB (nothing else reconciles its aws-load-balancer-type: external annotation).
chart-install: chart-preflight addons-install
	$(HELM) upgrade --install fairshare $(CHART) --namespace fairshare --create-namespace \
	  $(CHART_INSTALL_VALUES) --wait --timeout 15m
