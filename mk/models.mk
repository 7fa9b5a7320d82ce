# Tenants' own models (docs/models.md, docs/design/0003).
#   make bench-models    hit rate (simulation on the real cache code: 10,000 models, ring hash vs least-request
#                        vs offline oracle, several budgets), cold loads from a moto S3 vs fetch + sha256,
#                        residency and RSS over 10,000 load/unload cycles, fairness with real models, warm p99
#                        and routing through the real Envoy, 1,000 own models onboarded among 10,000 tenants;
#                        writes bench/results/models.{json,md} and models_hitrate.png, models_rss.png
#                        (about 10 minutes on 2 cores)
.PHONY: bench-models

bench-models: setup
	$(BIN)/python -m bench.models
