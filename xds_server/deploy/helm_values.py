"""The tenant spec as Helm values for one region: the chart's `spec` block.

The chart cannot read files outside its directory, so this module is the one bridge from config/ (and
policy/) to the cluster. It emits, from a single read of the config directory:

* what the chart's templates iterate over (pools, model versions, tenants with effective quotas), taken
  from the validated PlatformConfig the control plane itself compiles, so the two cannot disagree;
* the config and policy files verbatim, which the chart mounts into the control plane as ConfigMaps,
  so the control plane in the cluster loads exactly the bytes the values were derived from.

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

# The chart names the control plane's Service this (no release prefix: one platform per namespace), so the
# gateway bootstrap, generated here by the same code as the local one, can point at it.
CONTROL_PLANE_SERVICE = "fairshare-control-plane"
XDS_PORT = 18000
ENVOY_ADMIN_PORT = 9901

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
    pools = [
        {"name": p.name, "accelerator": p.accelerator, "replicas": p.replicas, "gpusPerReplica": p.gpus_per_replica}
        for p in reg.pools
    ]
    models = [
        {"name": name, "version": version, "kind": str(model.kind), "pool": mv.pool, "loader": mv.loader}
        for name, model in sorted(cfg.models.items())
        for version, mv in sorted(model.versions.items())
        if region in cfg.version_regions(name, version)
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
            "models": models,
            "tenants": tenants,
            "configFiles": _files(config_dir, _config_paths(config_dir)),
            "policyFiles": _files(policy_dir, _policy_paths(policy_dir)) if policy_dir else [],
        }
    }


def _config_paths(root: Path) -> Iterable[Path]:
    """What the loader reads: the top-level YAML files and tenants/*.yaml."""
    for directory in (root, root / "tenants"):
        if directory.is_dir():
            yield from sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(_CONFIG_SUFFIXES))


def _policy_paths(root: Path) -> Iterable[Path]:
    # Tests stay in git: the engines in the cluster need the policies, not their tests.
    return sorted(p for p in root.rglob("*.rego") if p.is_file() and not p.name.endswith("_test.rego"))


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
