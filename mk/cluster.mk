# Fairshare in a real cluster (issue 12): endpoints from Kubernetes, an HA control plane, config from a
# bundle, failover inside residency.
#   make bench-cluster   an endpoint change to Envoy at 10,000 tenants, requests failed in a rolling restart
#                        and while a control-plane replica is lost, time to fail over and back, memory with
#                        10,000 tenants from a bundle; writes bench/results/cluster*.{json,md}
.PHONY: bench-cluster

bench-cluster: setup
	$(BIN)/python -m bench.cluster
