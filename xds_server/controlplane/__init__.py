"""The running control plane: watch config, compile, publish snapshots, report status."""
