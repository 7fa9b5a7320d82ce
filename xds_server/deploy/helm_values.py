"""The tenant spec as Helm values for one region: the chart's `spec` block.

The chart cannot read files outside its directory, so this module is the one bridge from config/ (and
policy/) to the cluster. It emits, from a single read of the config directory:

* what the chart's templates iterate over (pools, model versions, tenants with effective quotas), taken
  from the validated PlatformConfig the control plane itself compiles, so the two cannot disagree;
* the config and policy files verbatim, which the chart mounts into the control plane as ConfigMaps,
  so the control plane in the cluster loads exactly the bytes the values were derived from (the chart
  adds to platform.yaml only the addresses of the cluster's own services);
* the model artifacts the config names by local path (tenants' own models, catalog `onnx` models), as
  binary keys of the same ConfigMap, mounted at the same path in the runtimes, so a local artifact is at
  the path the control plane resolved it to in both. Anything larger belongs on S3.

Operator settings (images, replica counts, HPA) live in other values files; `spec` is generated only.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from xds_server.config.errors import ConfigError, Problem
from xds_server.config.model import PlatformConfig, ResolvedTenant, is_s3
from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.sds import CHART_CERTS_DIR, sds_documents
from xds_server.local.layout import FRONT, plan_replicas, region_cells, replica_count

# The chart names the control plane's Service this (no release prefix: one platform per namespace), so the
# gateway bootstrap, generated here by the same code as the local one, can point at it.
CONTROL_PLANE_SERVICE = "fairshare-control-plane"
XDS_PORT = 18000
ENVOY_ADMIN_PORT = 9901
PLATFORM_FILE = "platform.yaml"
# Where the chart mounts the config in the control plane and the model files in the runtimes (the same path
# in both, so the absolute artifact path the control plane resolves is the runtimes' too).
CONFIG_MOUNT = "/etc/fairshare/config"
# What one ConfigMap may hold (etcd's object limit), less room for its metadata.
CONFIGMAP_LIMIT = 1024 * 1024 - 16 * 1024

# A tenant gets its own namespace (quota, limits, default-deny network) when it is promised capacity.
DEDICATED_TIERS = frozenset({"enterprise"})

# ConfigMap keys allow only these characters; directories are restored by the volume's items paths.
_KEY_SAFE = re.compile(r"[^-._a-zA-Z0-9]")
_CONFIG_SUFFIXES = (".yaml", ".yml")


class ChartValuesError(ConfigError):
    """A sound config the chart cannot carry as asked (a region it lacks, artifacts it cannot ship)."""

    HEADLINE = "the chart cannot ship this config"


def is_dedicated(tenant: ResolvedTenant) -> bool:
    return tenant.quotas.gpus > 0 or tenant.spec.tier in DEDICATED_TIERS


def chart_values(cfg: PlatformConfig, region: str, config_dir: Path, policy_dir: Path | None = None,
                 config_source: str | None = None) -> dict[str, Any]:
    """The `spec` values for `region`. Raises ChartValuesError naming the region if it is not in the config.

    `config_source` (the chart's `config.source`: s3://bucket/key or git): the control plane reads the config
    and policies from there, so they are not shipped in ConfigMaps and the 1 MiB cap does not apply to them
    (local model artifacts still travel in the ConfigMap, for the runtimes, and are still capped)."""
    reg = cfg.regions.get(region)
    if reg is None:
        raise ChartValuesError([Problem("--region", region, (
            f"not a region of {config_dir / 'regions.yaml'} (known: {', '.join(sorted(cfg.regions))})"))])
    # What each replica of a pool serves comes from the same plan `fairshare run` starts locally: every
    # model version on the pool in the region, in one runtime (the compiler's endpoint sets are per pool).
    served = {(r.region, r.pool): r.models for r in plan_replicas(cfg, [0] * replica_count(cfg))}  # ports unused
    own = _own_models_per_pool(cfg, region)
    root = Path(os.path.normpath(config_dir.absolute()))
    config_files = [] if config_source else _config_files(config_dir)
    model_files = _model_files(cfg, root, region)
    if config_source and model_files:
        # The runtimes would find them only in the ConfigMap, at the path the control plane resolved from its
        # own copy of the config; from a bundle or checkout that path is another one.
        raise ChartValuesError([Problem(str(root / model_files[0]["path"]), "", (
            f"with config source {config_source}, model artifacts given by local path cannot reach the runtimes "
            f"({len(model_files)} of them); put them on S3 (s3://<region's model_bucket>/...)"))])
    _check_configmap_size(config_dir, config_files, model_files)
    pools = [
        {"name": p.name, "accelerator": p.accelerator, "replicas": p.replicas, "gpusPerReplica": p.gpus_per_replica,
         "models": [{"name": m.name, "version": m.version, "loader": m.loader,
                     **({"artifact": _in_cluster(m.artifact, root), "sha256": m.sha256} if m.artifact else {})}
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
    cells = region_cells(cfg, region)

    def gateway_bootstrap(cell: str | None) -> str:
        # node.id is replaced by each pod's name (--service-node); admin stays on loopback.
        return json.dumps(bootstrap("gateway", region, CONTROL_PLANE_SERVICE, XDS_PORT, ENVOY_ADMIN_PORT,
                                    xds_tls_dir=_xds_tls_dir(cfg), cell=cell), indent=2)

    return {
        "spec": {
            "region": region,
            "gatewayPort": reg.gateway_port,
            # With cells, the region's public gateway is its front tier (templates/gateway.yaml).
            "gatewayBootstrap": gateway_bootstrap(FRONT if cells else None),
            # A region with cells: a gateway fleet per cell (templates/cells.yaml); absent for one cell.
            **({"cells": [{"name": c, "bootstrap": gateway_bootstrap(c)} for c in cells]} if cells else {}),
            # Mutual TLS to the runtimes (platform.yaml gateway.upstream_tls): the gateway's SDS files, at the
            # directory the compiled clusters name; its certificates are mounted from a Secret beside them.
            "upstreamTls": _upstream_tls(cfg),
            "pools": pools,
            "tenants": tenants,
            "configFiles": config_files,
            "modelFiles": model_files,
            # The chart runs this many control-plane replicas when set, and refuses more than one whose
            # rate-limit counters would not be shared (the config itself refuses memory with replicas > 1).
            "controlPlane": {
                "replicas": cfg.platform.controlplane.replicas,
                "rateLimitBackend": cfg.platform.ratelimit.backend.value if cfg.platform.ratelimit.enabled else "off",
            },
            "policyFiles": _files(policy_dir, _policy_paths(policy_dir)) if policy_dir and not config_source else [],
            # What the runtimes read from AWS in this region, which needs their IRSA role (and the keys' prefix):
            # the chart refuses an install without them rather than answer these with 503 in the cluster.
            "runtimeAws": {
                "s3Artifacts": _s3_artifacts(cfg, region, pools),
                "pseudonymisingTenants": sorted(t.id for t in cfg.tenants.values()
                                                if region in t.spec.regions.allowed and t.pii.pseudonymise),
            },
        }
    }


def _xds_tls_dir(cfg: PlatformConfig) -> str | None:
    tls = cfg.platform.gateway.upstream_tls
    return tls.sds_dir if tls.to_control_plane else None


def _upstream_tls(cfg: PlatformConfig) -> dict[str, Any]:
    tls = cfg.platform.gateway.upstream_tls
    # controlPlane: the control plane serves xDS and rate limits over mutual TLS (its --tls-dir, tls.yaml).
    return {"enabled": tls.enabled, "controlPlane": tls.to_control_plane, "sdsDir": tls.sds_dir,
            "certsDir": CHART_CERTS_DIR,
            "sdsFiles": sds_documents(tls.sds_dir, CHART_CERTS_DIR) if tls.enabled else {}}


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
    return files


def _local_artifacts(cfg: PlatformConfig, region: str) -> Iterable[tuple[str, str, str]]:
    """(absolute path, the file that names it, its field there) of every artifact given as a local path that
    `region`'s cluster holds: the catalog's, and the own models of the tenants allowed there only (a tenant's
    model bytes stay in the regions its residency allows, as its S3 artifacts must)."""
    for name, model in sorted(cfg.models.items()):
        for version, mv in sorted(model.versions.items()):
            if mv.artifact is not None and not is_s3(mv.artifact):
                yield mv.artifact, "models.yaml", f"{name}.versions.{version}.artifact"
    for t in sorted(cfg.tenants.values(), key=lambda t: t.id):
        if region not in t.spec.regions.allowed:
            continue
        for name, own in sorted(t.spec.own_models.items()):
            for version, ov in sorted(own.versions.items()):
                if not is_s3(ov.artifact):
                    yield ov.artifact, f"tenants/{t.id}.yaml", f"own_models.{name}.versions.{version}.artifact"


def _s3_artifacts(cfg: PlatformConfig, region: str, pools: list[dict[str, Any]]) -> list[str]:
    """Each S3 artifact the region's runtimes load (with their IRSA role), as its file and field: the catalog
    versions its pools serve, and the own models of the tenants allowed there."""
    catalog = sorted({f"models.yaml: {m['name']}.versions.{m['version']}.artifact"
                      for p in pools for m in p["models"] if is_s3(m.get("artifact", ""))})
    own = [f"tenants/{t.id}.yaml: own_models.{name}.versions.{version}.artifact"
           for t in sorted(cfg.tenants.values(), key=lambda t: t.id) if region in t.spec.regions.allowed
           for name, model in sorted(t.spec.own_models.items())
           for version, ov in sorted(model.versions.items()) if is_s3(ov.artifact)]
    return catalog + own


def _model_files(cfg: PlatformConfig, root: Path, region: str) -> list[dict[str, str]]:
    """`region`'s local artifacts as ConfigMap binary keys (content base64), each at its path under the config."""
    paths: set[Path] = set()
    for artifact, file, field in _local_artifacts(cfg, region):
        path = Path(artifact)
        if not path.is_relative_to(root):
            raise ChartValuesError([Problem(str(root / file), field, (
                f"{artifact} is outside the config directory, so the chart cannot ship it to the cluster; "
                "put it under the config directory, or on S3 (s3://<region's model_bucket>/tenants/<tenant>/...)"))])
        paths.add(path)
    return _files(root, sorted(paths), binary=True)


def _in_cluster(artifact: str, root: Path) -> str:
    """A local artifact's path where the chart mounts it (s3:// URIs are the same everywhere)."""
    if is_s3(artifact):
        return artifact
    return f"{CONFIG_MOUNT}/{Path(artifact).relative_to(root).as_posix()}"


def _check_configmap_size(root: Path, config: list[dict[str, str]], models: list[dict[str, str]]) -> None:
    keys = {f["key"] for f in config}
    for f in models:
        if f["key"] in keys:
            raise ChartValuesError([Problem(str(root / f["path"]), "", (
                f"its ConfigMap key {f['key']!r} is also that of a config file; rename one of them"))])
    text = sum(len(f["content"].encode()) for f in config)
    binary = sum(len(base64.b64decode(f["content"])) for f in models)
    if text + binary > CONFIGMAP_LIMIT:
        raise ChartValuesError([Problem(str(root), "", (
            f"the config is {text:,} bytes and its local model artifacts {binary:,}, over the {CONFIGMAP_LIMIT:,} "
            "a Kubernetes ConfigMap holds, whatever the cells (every region's control plane reads the whole "
            "fleet's config): serve the config from a bucket (`make config-publish`, the chart's config.source, "
            "`fairshare chart-values --config-source s3://BUCKET/KEY`), and put model artifacts on S3"))])


def _files(root: Path, paths: Iterable[Path], *, binary: bool = False) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    keys: dict[str, str] = {}
    for path in paths:
        rel = path.relative_to(root).as_posix()
        key = _KEY_SAFE.sub("_", rel.replace("/", "."))
        if key in keys:
            raise ChartValuesError([Problem(str(path), "", f"its ConfigMap key {key!r} is also that of {keys[key]!r}; "
                                                      "rename one of the files")])
        keys[key] = rel
        content = base64.b64encode(path.read_bytes()).decode() if binary else path.read_text()
        out.append({"key": key, "path": rel, "content": content})
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
