"""xDS serving: snapshot store (what to serve) split from the ADS protocols (how to serve it)."""
