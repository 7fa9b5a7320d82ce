# Per-tenant rate limits at the gateway (xds_server/ratelimit, docs/ratelimit.md).
#   make bench-ratelimit     admitted rate vs limit at 1.5x/3x/10x through 2 Envoys + Redis, decision and
#                            added latency; writes bench/results/ratelimit.{json,md,png} (about 2 minutes)
#   make test-ratelimit      the rate-limit tests alone (unit, compiler, and through the real Envoy + Redis)
.PHONY: bench-ratelimit test-ratelimit

bench-ratelimit: setup
	$(BIN)/python -m bench.ratelimit

test-ratelimit: setup
	$(BIN)/pytest -q -ra tests/ratelimit
