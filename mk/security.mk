# Production isolation (issue 13): what mutual TLS between Envoy and the runtimes costs, and a gateway
# scale-down with drain.
#   make bench-mtls      p50/p99 through Envoy with mTLS vs plaintext (same run, interleaved), requests failed
#                        while a gateway drains and stops under load; writes bench/results/mtls.{json,md}
.PHONY: bench-mtls

bench-mtls: setup
	$(BIN)/python -m bench.mtls
