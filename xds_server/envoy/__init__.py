"""Running the real Envoy: bootstrap generation and a process wrapper for tests and benchmarks."""

from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.process import EnvoyError, EnvoyProcess, find_envoy

__all__ = ["EnvoyError", "EnvoyProcess", "bootstrap", "find_envoy"]
