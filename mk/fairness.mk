# Fairness: weighted fair queuing in the runtime vs FIFO, through the real Envoy (docs/fairness.md).
.PHONY: bench-fairness test-fairness

bench-fairness: setup
	$(BIN)/python -m bench.fairness

test-fairness: setup
	$(BIN)/pytest -q tests/fairness tests/runtime/test_scheduling_policies.py \
	  tests/runtime/test_scheduling_controller.py tests/runtime/test_runtime_admission.py
