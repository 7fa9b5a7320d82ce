"""The tenant spec as Helm values for one region: the chart's `spec` block.

The chart cannot read files outside its directory, so this module is the one bridge from config/ (and
policy/) to the cluster. It emits, from a single read of the config directory:

* what the chart's templates iterate over (pools, model versions, tenants with effective quotas), taken
  from the validated PlatformConfig the control plane itself compiles, so the two cannot disagree;
* the config and policy files verbatim, which the chart mounts into the control plane as ConfigMaps,
  so the control plane in the cluster loads exactly the bytes the values were derived from (the chart
  adds to platform.yaml only the addresses of the cluster's own services).

Operator settings (images, replica counts, HPA) live in other values files; `spec` is generated only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from xds_server.config.errors import ConfigError, Problem
from xds_server.config.model import PlatformConfig, ResolvedTenant
from xds_server.envoy.bootstrap import bootstrap
from xds_server.local.layout import plan_replicas, replica_count

# The chart names the control plane's Service this (no release prefix: one platform per namespace), so the
# gateway bootstrap, generated here by the same code as the local one, can point at it.
CONTROL_PLANE_SERVICE = "fairshare-control-plane"
XDS_PORT = 18000
ENVOY_ADMIN_PORT = 9901
PLATFORM_FILE = "platform.yaml"
# What one ConfigMap may hold (etcd's object limit), less room for its metadata.
CONFIGMAP_LIMIT = 1024 * 1024 - 16 * 1024

# A tenant gets its own namespace (quota, limits, default-deny network) when it is promised capacity.
DEDICATED_TIERS = frozenset({"enterprise"})

# ConfigMap keys allow only these characters; directories are restored by the volume's items paths.
_KEY_SAFE = re.compile(r"[^-._a-zA-Z0-9]")
_CONFIG_SUFFIXES = (".yaml", ".yml")


def is_dedicated(tenant: ResolvedTenant) -> bool:
    return tenant.quotas.gpus > 0 or tenant.spec.tier in DEDICATED_TIERS


def chart_values(cfg: PlatformConfig, region: str, config_dir: Path, policy_dir: Path | None = None) -> dict[str, Any]:
    """The `spec` values for `region`. Raises ConfigError naming the region if it is not in the config."""
    reg = cfg.regions.get(region)
    if reg is None:
        raise ConfigError([Problem(str(config_dir / "regions.yaml"), "regions",
                                   f"region {region!r} is not defined; known: {', '.join(sorted(cfg.regions))}")])
    # What each replica of a pool serves comes from the same plan `fairshare run` starts locally: every
    # model version on the pool in the region, in one runtime (the compiler's endpoint sets are per pool).
    served = {(r.region, r.pool): r.models for r in plan_replicas(cfg, [0] * replica_count(cfg))}  # ports unused
    own = _own_models_per_pool(cfg, region)
    pools = [
        {"name": p.name, "accelerator": p.accelerator, "replicas": p.replicas, "gpusPerReplica": p.gpus_per_replica,
         "models": [{"name": m.name, "version": m.version, "loader": m.loader}
                    for m in served.get((region, p.name), ())],
         # Tenants' own models routed to the pool here: a pool with some runs replicas even with no catalog
         # model (they load on first request), and each replica's cache budget is the pool's.
         "ownModels": own.get(p.name, 0),
         "modelCacheMb": p.model_cache_mb}
        for p in reg.pools
    ]
    tenants = [
        {
            "id": t.id,
            "tier": t.spec.tier,
            "weight": t.weight,
            "dedicated": is_dedicated(t),
            "quotas": {
                "concurrency": t.quotas.concurrency,
                "requestsPerSecond": t.quotas.requests_per_second,
                "tokensPerMinute": t.quotas.tokens_per_minute,
                "gpus": t.quotas.gpus,
            },
        }
        for t in sorted(cfg.tenants.values(), key=lambda t: t.id)
        if region in t.spec.regions.allowed
    ]
    return {
        "spec": {
            "region": region,
            "gatewayPort": reg.gateway_port,
            # node.id is replaced by each pod's name (--service-node); admin stays on loopback.
            "gatewayBootstrap": json.dumps(
                bootstrap("gateway", region, CONTROL_PLANE_SERVICE, XDS_PORT, ENVOY_ADMIN_PORT), indent=2),
            "pools": pools,
            "tenants": tenants,
            "configFiles": _config_files(config_dir),
            "policyFiles": _files(policy_dir, _policy_paths(policy_dir)) if policy_dir else [],
        }
    }


def _own_models_per_pool(cfg: PlatformConfig, region: str) -> dict[str, int]:
    """How many tenants' own models each pool of ``region`` is routed: the same own routes the compiler
    and the local launcher read, so the chart runs replicas exactly where they would."""
    counts: dict[str, int] = {}
    for t in cfg.tenants.values():
        for name in t.own_routes.get(region, ()):
            if name in t.spec.own_models:
                pool = t.spec.own_models[name].pool
                counts[pool] = counts.get(pool, 0) + 1
    return counts


def _config_paths(root: Path) -> Iterable[Path]:
    """What the loader reads: the top-level YAML files and tenants/*.yaml."""
    for directory in (root, root / "tenants"):
        if directory.is_dir():
            yield from sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(_CONFIG_SUFFIXES))


def _policy_paths(root: Path) -> Iterable[Path]:
    # Tests stay in git: the engines in the cluster need the policies, not their tests.
    return sorted(p for p in root.rglob("*.rego") if p.is_file() and not p.name.endswith("_test.rego"))


def _config_files(root: Path) -> list[dict[str, str]]:
    files = _files(root, _config_paths(root))
    if not any(f["path"] == PLATFORM_FILE for f in files):
        # Optional locally (defaults apply); the chart writes the cluster's service addresses into it.
        files.insert(0, {"key": PLATFORM_FILE, "path": PLATFORM_FILE, "content": "{}\n"})
    size = sum(len(f["content"].encode()) for f in files)
    if size > CONFIGMAP_LIMIT:
        raise ConfigError([Problem(str(root), "", (
            f"the config is {size:,} bytes, over the {CONFIGMAP_LIMIT:,} a Kubernetes ConfigMap holds; "
            "the chart cannot ship it (split the tenants into cells, or serve the config from a bucket)"))])
    return files


def _files(root: Path, paths: Iterable[Path]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    keys: dict[str, str] = {}
    for path in paths:
        rel = path.relative_to(root).as_posix()
        key = _KEY_SAFE.sub("_", rel.replace("/", "."))
        if key in keys:
            raise ConfigError([Problem(str(path), "", f"its ConfigMap key {key!r} is also that of {keys[key]!r}; "
                                                      "rename one of the files")])
        keys[key] = rel
        out.append({"key": key, "path": rel, "content": path.read_text()})
    return out


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Files as literal blocks, so a reviewer reads the generated values like the files themselves.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_values(values: dict[str, Any]) -> str:
    return yaml.dump(values, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
