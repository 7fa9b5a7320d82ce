# Per-tenant rate limits at the gateway (xds_server/ratelimit, docs/ratelimit.md).
#   make bench-ratelimit     admitted rate / limit for limits of 1, 5, 50, 500 requests/s and a token limit,
#                            each at 2x/3x/10x offered, through 1 Envoy (memory) and 2 Envoys + Redis;
#                            decision and added latency; writes bench/results/ratelimit.{json,md,png}
#                            (about 5 minutes)
#   make test-ratelimit      the rate-limit tests alone (unit, compiler, and through the real Envoy + Redis)
.PHONY: bench-ratelimit test-ratelimit

bench-ratelimit: setup
	$(BIN)/python -m bench.ratelimit

test-ratelimit: setup
	$(BIN)/pytest -q -ra tests/ratelimit
