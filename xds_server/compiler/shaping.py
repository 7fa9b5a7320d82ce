"""The tenants whose specs add region-wide resources (own-model clusters, failover endpoint sets), found
once per config instead of by every per-region pass over every tenant: at 100,000 tenants each such pass
cost 0.1-0.15 s, six of them on every edit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar, cast

from xds_server.config.model import PlatformConfig, ResolvedTenant

T = TypeVar("T")

# The config last scanned and what it held; a compile (and its endpoint sets) asks about one config.
_last: tuple[PlatformConfig, tuple[ResolvedTenant, ...], tuple[ResolvedTenant, ...]] | None = None


def _scan(cfg: PlatformConfig) -> tuple[tuple[ResolvedTenant, ...], tuple[ResolvedTenant, ...]]:
    global _last
    last = _last
    if last is not None and last[0] is cfg:
        return last[1], last[2]
    own = tuple(t for t in cfg.tenants.values() if any(t.own_routes.values()))
    failover = tuple(t for t in cfg.tenants.values() if t.spec.regions.failover)
    _last = (cfg, own, failover)
    return own, failover


def with_own_models(cfg: PlatformConfig) -> tuple[ResolvedTenant, ...]:
    """Tenants with own-model routes, in the config's order."""
    return _scan(cfg)[0]


def with_failover(cfg: PlatformConfig) -> tuple[ResolvedTenant, ...]:
    """Tenants with a failover chain, in the config's order."""
    return _scan(cfg)[1]


# What one tenant adds to a region-wide resource, kept while the tenant (the same object: the policy layer
# hands back the object of an unchanged tenant) and the platform it was computed against are unchanged.
_contributions: dict[tuple[str, str, str], tuple[ResolvedTenant, str, object]] = {}
_platform: tuple[PlatformConfig, str] | None = None


def _platform_key(cfg: PlatformConfig) -> str:
    global _platform
    last = _platform
    if last is not None and last[0] is cfg:
        return last[1]
    key = json.dumps([{k: v.model_dump(mode="json") for k, v in cfg.models.items()},
                      {k: v.model_dump(mode="json") for k, v in cfg.regions.items()}], sort_keys=True)
    _platform = (cfg, key)
    return key


def contribution(cfg: PlatformConfig, kind: str, region: str, tenant: ResolvedTenant, compute: Callable[[], T]) -> T:
    """`compute()` for this tenant, or what it gave last time for the same tenant object and platform."""
    platform = _platform_key(cfg)
    key = (kind, region, tenant.spec.id)
    hit = _contributions.get(key)
    if hit is None or hit[0] is not tenant or hit[1] != platform:
        if len(_contributions) > 8 * len(cfg.tenants) + 1024:
            _contributions.clear()  # tenants come and go: never more than a few entries per live tenant
        hit = _contributions[key] = (tenant, platform, compute())
    return cast(T, hit[2])
