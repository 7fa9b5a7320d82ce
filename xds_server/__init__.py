"""Fairshare control plane: config model, compiler, xDS server, CLI."""

import os

# The control plane forks worker processes for a cold load (xds_server/workers.py) that never call gRPC.
# gRPC's fork handlers would pause its threads at every fork (or log, each time, that they could not);
# they are only for children that use gRPC, so they are off unless whoever runs us asked for them.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
