"""Which runtime replicas a config needs locally: per region, per pool, `replicas` processes, each
serving every model version deployed on that pool in that region, and tenants' own models on demand."""

from __future__ import annotations

from dataclasses import dataclass

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config.model import PlatformConfig


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    loader: str
    artifact: str | None = None  # `loader: onnx`: where the bytes are
    sha256: str | None = None

    def arg(self) -> str:
        return f"{self.name}:{self.version}:{self.loader}"

    def args(self) -> list[str]:
        """The runtime's flags for this model: --model, and --artifact for one that brings its bytes."""
        out = ["--model", self.arg()]
        if self.artifact is not None:
            out += ["--artifact", f"{self.name}:{self.version}={self.artifact}#sha256={self.sha256}"]
        return out


@dataclass(frozen=True)
class ReplicaSpec:
    region: str
    pool: str
    replica: str
    port: int
    models: tuple[ModelSpec, ...]
    admin_port: int | None = None  # the OIP repository extension (index, load, unload); never routed to
    cache_budget_mb: int | None = None  # the pool's model_cache_mb

    @property
    def name(self) -> str:
        return f"runtime-{self.region}-{self.pool}-{self.replica}"


def plan_replicas(cfg: PlatformConfig, ports: list[int], admin_ports: list[int] | None = None) -> list[ReplicaSpec]:
    """`ports` (and `admin_ports`, when given) must hold at least as many free ports as replicas; one is
    taken per replica in order."""
    out: list[ReplicaSpec] = []
    free = iter(ports)
    free_admin = iter(admin_ports) if admin_ports is not None else None
    for region_id, region in cfg.regions.items():
        own_pools = _own_model_pools(cfg, region_id)
        for pool in region.pools:
            models = tuple(
                ModelSpec(name, version, mv.loader, mv.artifact, mv.sha256)
                for name, model in sorted(cfg.models.items())
                for version, mv in sorted(model.versions.items())
                if mv.pool == pool.name and region_id in cfg.version_regions(name, version)
            )
            if not models and pool.name not in own_pools:
                continue  # a pool with nothing to serve runs nothing locally
            for i in range(pool.replicas):
                admin = next(free_admin) if free_admin is not None else None
                out.append(ReplicaSpec(region_id, pool.name, f"r{i + 1}", next(free), models, admin,
                                       pool.model_cache_mb))
    return out


def _own_model_pools(cfg: PlatformConfig, region: str) -> set[str]:
    """Pools of `region` that serve some tenant's own model there: they run replicas even with no
    catalog model, since own models load on a replica's first request for them."""
    return {t.spec.own_models[m].pool for t in cfg.tenants.values() for m in t.own_routes.get(region, ())
            if m in t.spec.own_models}


def replica_count(cfg: PlatformConfig) -> int:
    return sum(p.replicas for r in cfg.regions.values() for p in r.pools)


def endpoint_directory(replicas: list[ReplicaSpec], host: str = "127.0.0.1") -> EndpointDirectory:
    by_pool: dict[tuple[str, str], list[Endpoint]] = {}
    for r in replicas:
        by_pool.setdefault((r.region, r.pool), []).append(Endpoint(host, r.port, r.admin_port, r.name))
    return EndpointDirectory({k: tuple(sorted(v)) for k, v in by_pool.items()})
