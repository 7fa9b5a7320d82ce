"""Which runtime replicas a config needs locally: per region, per pool, `replicas` processes, each
serving every model version deployed on that pool in that region."""

from __future__ import annotations

from dataclasses import dataclass

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config.model import PlatformConfig


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    loader: str

    def arg(self) -> str:
        return f"{self.name}:{self.version}:{self.loader}"


@dataclass(frozen=True)
class ReplicaSpec:
    region: str
    pool: str
    replica: str
    port: int
    models: tuple[ModelSpec, ...]

    @property
    def name(self) -> str:
        return f"runtime-{self.region}-{self.pool}-{self.replica}"


def plan_replicas(cfg: PlatformConfig, ports: list[int]) -> list[ReplicaSpec]:
    """`ports` must hold at least as many free ports as replicas; one is taken per replica in order."""
    out: list[ReplicaSpec] = []
    free = iter(ports)
    for region_id, region in cfg.regions.items():
        for pool in region.pools:
            models = tuple(
                ModelSpec(name, version, mv.loader)
                for name, model in sorted(cfg.models.items())
                for version, mv in sorted(model.versions.items())
                if mv.pool == pool.name and region_id in cfg.version_regions(name, version)
            )
            if not models:
                continue  # an empty pool runs nothing locally
            for i in range(pool.replicas):
                out.append(ReplicaSpec(region_id, pool.name, f"r{i + 1}", next(free), models))
    return out


def replica_count(cfg: PlatformConfig) -> int:
    return sum(p.replicas for r in cfg.regions.values() for p in r.pools)


def endpoint_directory(replicas: list[ReplicaSpec], host: str = "127.0.0.1") -> EndpointDirectory:
    by_pool: dict[tuple[str, str], list[Endpoint]] = {}
    for r in replicas:
        by_pool.setdefault((r.region, r.pool), []).append(Endpoint(host, r.port))
    return EndpointDirectory({k: tuple(sorted(v)) for k, v in by_pool.items()})
