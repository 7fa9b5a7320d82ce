"""What an incremental load tells the layers after it: which tenants differ from the config before."""

from __future__ import annotations

from dataclasses import dataclass

from xds_server.config.model import PlatformConfig


@dataclass(frozen=True)
class TenantChanges:
    """A config that differs from `since` only in these tenants (edited, added, removed, offboarded or back):
    its platform, tiers, regions, models and policies are the ones `since` was loaded with, and every other
    tenant is the very same object. Each layer may then redo only these tenants' work, where it can tell
    that its own last result was about `since` (else it does the whole config, as without this)."""

    since: PlatformConfig
    tenants: frozenset[str]
