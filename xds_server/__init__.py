"""Fairshare control plane: config model, compiler, xDS server, CLI."""
