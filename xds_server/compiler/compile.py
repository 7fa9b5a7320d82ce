"""Compile the validated config into one immutable snapshot per region.

Tenants compile independently and are memoised on their own spec, so an edit to one tenant among
thousands re-does only that tenant's resources.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from types import MappingProxyType

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.compiler import clusters, listener, naming, routes
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.config.model import PlatformConfig, ResolvedTenant
from xds_server.snapshot import Resource, Snapshot


@dataclass(frozen=True)
class CompileInputs:
    config: PlatformConfig
    endpoints: EndpointDirectory
    jwks: str
    listen_address: str = "0.0.0.0"


@dataclass(frozen=True)
class CompiledPlatform:
    version: str
    snapshots: MappingProxyType[str, Snapshot]


@dataclass
class Compiler:
    """Holds the per-tenant memo between compiles; otherwise a pure function of its inputs."""

    _memo: dict[tuple[str, str, str], tuple[Resource, ...]] = field(default_factory=dict)

    def compile(self, inputs: CompileInputs) -> CompiledPlatform:
        cfg = inputs.config
        shared_key = _shared_digest(cfg)
        fresh: dict[tuple[str, str, str], tuple[Resource, ...]] = {}
        snapshots: dict[str, Snapshot] = {}
        specs = {t.id: t.model_dump_json() for t in cfg.tenants.values()}  # memo keys, once per compile
        for region_id, region in cfg.regions.items():
            resources: list[Resource] = [
                Resource.pack(naming.LISTENER, listener.gateway_listener(
                    inputs.listen_address, region.gateway_port, cfg.platform.auth, inputs.jwks, region_id)),
            ]
            for model_name, model in cfg.models.items():
                for version, mv in model.versions.items():
                    if region_id in cfg.version_regions(model_name, version):
                        eds = naming.version_endpoints(model_name, version, region_id)
                        resources.append(Resource.pack(
                            eds, clusters.endpoint_set(eds, inputs.endpoints.of(region_id, mv.pool))))
            for tenant in cfg.tenants.values():
                key = (region_id, specs[tenant.id], shared_key)
                compiled = self._memo.get(key)
                if compiled is None:
                    compiled = tuple(_compile_tenant(cfg, tenant, region_id))
                fresh[key] = compiled
                resources.extend(compiled)
            snapshots[region_id] = Snapshot.build(_version(resources), resources)
        # Keep only what this config used: the memo never outgrows the current tenant set.
        self._memo = fresh
        overall = hashlib.blake2b(
            "".join(f"{r}:{s.version}" for r, s in sorted(snapshots.items())).encode(), digest_size=6,
        ).hexdigest()
        return CompiledPlatform(version=overall, snapshots=MappingProxyType(snapshots))


def _compile_tenant(cfg: PlatformConfig, tenant: ResolvedTenant, region: str) -> list[Resource]:
    spec = tenant.spec
    if region not in spec.regions.allowed:
        # Nothing of the tenant exists here: a region's gateways carry only the tenants they may serve,
        # and a request from any other tenant matches no scope (403 from the listener).
        return []
    out = [Resource.pack(naming.tenant_scope(spec.id), routes.tenant_scope(spec.id))]
    served: list[routes.ModelRoute] = []
    for model_name, grant in sorted(spec.models.items()):
        targets = []
        for version, weight in sorted(grant.split.items()):
            if region not in cfg.version_regions(model_name, version):
                continue  # only weight-0 versions get here: validation requires the rest to be deployed
            cluster = naming.tenant_cluster(spec.id, model_name, version, region)
            eds = naming.version_endpoints(model_name, version, region)
            out.append(Resource.pack(cluster, clusters.tenant_cluster(cluster, eds, tenant.quotas.concurrency)))
            targets.append(routes.VersionTarget(version=version, cluster=cluster, weight=weight))
        served.append(routes.ModelRoute(model=model_name, targets=tuple(targets)))
    forbidden = tuple(sorted(m for m in cfg.models if m not in spec.models))
    headers = {
        contract.REGION_HEADER: region,
        contract.WEIGHT_HEADER: f"{tenant.weight:g}",
        contract.TIER_HEADER: spec.tier,
        contract.PII_REDACT_HEADER: ",".join(sorted(spec.pii.redact)),
        contract.PII_BLOCK_HEADER: ",".join(sorted(spec.pii.block)),
        contract.MAX_QUEUE_HEADER: str(tenant.quotas.concurrency),
    }
    out.append(Resource.pack(naming.tenant_routes(spec.id), routes.tenant_routes(
        spec.id, tuple(served), forbidden, headers, cfg.platform.gateway.request_timeout_seconds)))
    return out


def _shared_digest(cfg: PlatformConfig) -> str:
    """Everything outside a tenant's own spec that its resources depend on."""
    shared = {
        "models": {k: v.model_dump(mode="json") for k, v in cfg.models.items()},
        "regions": {k: [p.name for p in v.pools] for k, v in cfg.regions.items()},
        "gateway": cfg.platform.gateway.model_dump(mode="json"),
    }
    return hashlib.blake2b(json.dumps(shared, sort_keys=True).encode(), digest_size=8).hexdigest()


def _version(resources: list[Resource]) -> str:
    h = hashlib.blake2b(digest_size=6)
    for r in sorted(resources, key=lambda r: (r.type_url, r.name)):
        h.update(r.name.encode())
        h.update(r.version.encode())
    return h.hexdigest()
