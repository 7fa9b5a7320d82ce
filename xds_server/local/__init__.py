"""Run the whole platform on one machine: control plane, runtimes, one Envoy per region."""
