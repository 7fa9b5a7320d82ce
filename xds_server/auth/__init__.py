"""Tenant identity: the signing key the gateway trusts, and the tokens it verifies."""
