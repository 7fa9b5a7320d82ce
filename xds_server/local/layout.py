"""Which runtime replicas a config needs locally: per region, per pool, `replicas` processes, each
serving every model version deployed on that pool in that region, and tenants' own models on demand."""

from __future__ import annotations

from dataclasses import dataclass

from xds_server.cells import layout as cell_layout
from xds_server.cells.keys import FRONT, snapshot_key
from xds_server.compiler import naming
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


# -- gateways: one fleet per region, or a front tier and a fleet per cell ---------------------------------



def region_cells(cfg: PlatformConfig, region: str) -> tuple[str, ...]:
    """The region's cells in their order (shared c0..c{N-1}, then dedicated); () for a single-cell region,
    which keeps today's layout: one gateway fleet, no front tier, no `cell` in its node metadata."""
    region_cfg = cfg.regions[region]
    return tuple(cell_layout.cells(region_cfg)) if cell_layout.is_split(region_cfg) else ()


@dataclass(frozen=True)
class GatewaySpec:
    region: str
    cell: str | None  # None: a single-cell region's gateway; FRONT: the front tier; else that cell's gateway
    replica: int  # 0 is the first; the others share its port (SO_REUSEPORT), as replicas behind one Service
    port: int  # its listener's port (the control plane sets it over xDS; here for the banner and endpoints)

    @property
    def snapshot(self) -> str:
        """The control plane's snapshot key this Envoy gets (and its status reports it under)."""
        return snapshot_key(self.region, self.cell)

    @property
    def key(self) -> str:
        """Its name in LocalPlatform.envoys: the snapshot key, then `#n` for the n-th replica (n > 1)."""
        return self.snapshot if self.replica == 0 else f"{self.snapshot}#{self.replica + 1}"

    @property
    def node_id(self) -> str:
        base = f"gateway-{self.region}" if self.cell is None else f"gateway-{self.region}-{self.cell}"
        return base if self.replica == 0 else f"{base}-{self.replica + 1}"


def plan_gateways(cfg: PlatformConfig, per_region: int = 1, per_cell: int = 1) -> list[GatewaySpec]:
    """Every gateway Envoy a local run starts. A single-cell region: `per_region` gateways on its port, as
    today. A region with cells: `per_region` front-tier Envoys on its port, and `per_cell` Envoys per cell
    on that cell's local port."""
    out: list[GatewaySpec] = []
    for region_id, region in cfg.regions.items():
        cells = region_cells(cfg, region_id)
        out += [GatewaySpec(region_id, FRONT if cells else None, n, region.gateway_port) for n in range(per_region)]
        for k, cell in enumerate(cells):
            out += [GatewaySpec(region_id, cell, n, cell_layout.local_port(region, k)) for n in range(per_cell)]
    return out


def port_clashes(gateways: list[GatewaySpec], reserved: dict[int, str]) -> list[tuple[str, str]]:
    """(region, what to say) for each port two gateways of different snapshots, or a gateway and one of
    the run's own ports (`reserved`: port -> what holds it), would both listen on. Envoy's SO_REUSEPORT
    lets both bind, and the kernel would spread one region's clients over the other's gateway."""
    holders: dict[int, list[GatewaySpec]] = {}
    for gw in gateways:
        if gw.replica == 0:
            holders.setdefault(gw.port, []).append(gw)
    out: list[tuple[str, str]] = []
    for port, specs in sorted(holders.items()):
        names = [_gateway_name(gw) for gw in specs] + ([reserved[port]] if port in reserved else [])
        if len(names) > 1:
            out.append((specs[0].region, (
                f"port {port} would be listened on by {' and '.join(names)} (locally a region's cell k listens on "
                "its gateway_port + 1 + k); set the regions' gateway_port further apart")))
    return out


def _gateway_name(gw: GatewaySpec) -> str:
    if gw.cell is None:
        return f"region {gw.region}'s gateway"
    return f"region {gw.region}'s {'front tier' if gw.cell == FRONT else f'cell {gw.cell}'}"


def cell_gateway_endpoints(cfg: PlatformConfig, host: str = "127.0.0.1") -> dict[tuple[str, str], tuple[Endpoint, ...]]:
    """Each cell's gateways as pool `gateway.<cell>` of its region: the front tier's cluster of that cell
    is EDS over them. One endpoint per cell: its replicas share the port, the kernel spreads connections."""
    return {
        (region_id, naming.cell_gateway_pool(cell)):
            (Endpoint(host, cell_layout.local_port(cfg.regions[region_id], k), None, f"gateway-{region_id}-{cell}"),)
        for region_id in cfg.regions
        for k, cell in enumerate(region_cells(cfg, region_id))
    }
