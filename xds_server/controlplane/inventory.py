"""`fairshare models`: every model the config declares (catalog and tenants' own), joined with what each
runtime replica's repository index says it holds now: where each model is resident, its hit rate, and
why it failed when it did (a digest mismatch, a download that did not complete)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config.model import PlatformConfig
from xds_server.controlplane import repository
from xds_server.controlplane.admin_client import AdminClient
from xds_server.listing import capped


@dataclass
class Residency:
    replica: str
    version: str
    state: str
    reason: str = ""
    bytes: int | None = None


@dataclass
class ModelRow:
    model: str  # `owner:name` for an own model, the catalog name otherwise
    owner: str | None  # None: a catalog model
    format: str
    pools: list[str]
    versions: dict[str, int | None]  # version -> percent of the split (None: catalog, per tenant)
    regions: list[str]
    resident: list[Residency] = field(default_factory=list)
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    @property
    def failed(self) -> list[Residency]:
        return [r for r in self.resident if r.state.upper() == "FAILED"]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "hit_rate": self.hit_rate}


@dataclass
class Inventory:
    rows: list[ModelRow]
    unreachable: list[str]  # replicas whose index could not be read, with why

    def to_json(self) -> dict[str, Any]:
        return {"models": [r.to_json() for r in self.rows], "unreachable": self.unreachable}

    def render(self) -> str:
        header = ("MODEL", "FORMAT", "POOL", "VERSIONS", "REGIONS", "RESIDENT ON", "HIT RATE", "STATE")
        table = [header]
        for r in self.rows:
            versions = " ".join(v if pct is None else f"{v}={pct}%" for v, pct in r.versions.items())
            ready = sorted({f"{x.replica}@{x.version}" for x in r.resident if x.state.upper() == "READY"})
            rate = "-" if r.hit_rate is None else f"{100 * r.hit_rate:.0f}% of {r.hits + r.misses}"
            # A model resident on many replicas (or failing on many) is a few names and a count; --json has all.
            state = capped((f"FAILED on {x.replica}@{x.version}: {x.reason}" for x in r.failed), sep="; ") or (
                "ready" if ready else "not loaded")
            table.append((r.model, r.format, ",".join(r.pools), versions, ",".join(r.regions),
                          capped(ready) or "-", rate, state))
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                 for row in table]
        lines += [f"warning: {u}" for u in self.unreachable]
        return "\n".join(lines)


def declared(cfg: PlatformConfig, tenant: str | None = None) -> list[ModelRow]:
    """The models of the config (those `tenant` may call, when given), not yet joined with replicas."""
    rows: list[ModelRow] = []
    granted = set(cfg.tenants[tenant].spec.models) if tenant is not None else set(cfg.models)
    for name, model in sorted(cfg.models.items()):
        if name not in granted:
            continue
        regions = sorted({r for v in model.versions for r in cfg.version_regions(name, v)})
        loaders = sorted({mv.loader for mv in model.versions.values()})
        rows.append(ModelRow(model=name, owner=None, format=",".join(loaders),
                             pools=sorted({mv.pool for mv in model.versions.values()}),
                             versions=dict.fromkeys(sorted(model.versions)), regions=regions))
    for tid, t in sorted(cfg.tenants.items()):
        if tenant is not None and tid != tenant:
            continue
        for name, om in sorted(t.spec.own_models.items()):
            regions = sorted(r for r, names in t.own_routes.items() if name in names)
            rows.append(ModelRow(model=f"{tid}:{name}", owner=tid, format=str(om.format), pools=[om.pool],
                                 versions={v: om.split.get(v, 0) for v in sorted(om.versions)}, regions=regions))
    return rows


def build(cfg: PlatformConfig, endpoints: EndpointDirectory, tenant: str | None = None,
          timeout: float = repository.TIMEOUT_S, *, client: AdminClient) -> Inventory:
    rows = declared(cfg, tenant)
    by_name = {r.model: r for r in rows}
    unreachable: list[str] = []
    for (region, pool), eps in sorted(endpoints.by_pool.items()):
        for endpoint in eps:
            where = _replica_name(endpoint, region, pool)
            try:
                entries = repository.index(endpoint, timeout, client=client)
            except (OSError, ValueError) as err:
                unreachable.append(f"{where}: index not readable ({err})")
                continue
            for entry in entries:
                row = by_name.get(str(entry.get("name", "")))
                if row is None:
                    continue  # a model the config no longer names (unloading), or not this tenant's
                row.resident.append(Residency(
                    replica=where, version=str(entry.get("version", "")), state=str(entry.get("state", "")),
                    reason=str(entry.get("reason", "") or ""),
                    bytes=entry["bytes"] if isinstance(entry.get("bytes"), int) else None))
                row.hits += _count(entry.get("hits"))
                row.misses += _count(entry.get("misses"))
    return Inventory(rows, unreachable)


def _replica_name(endpoint: Endpoint, region: str, pool: str) -> str:
    return endpoint.name or f"{region}/{pool}/{endpoint.host}:{endpoint.port}"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def endpoints_from_status(status: dict[str, Any]) -> EndpointDirectory:
    """The replicas a running control plane reports (its status page's `replicas`)."""
    by_pool: dict[tuple[str, str], list[Endpoint]] = {}
    for r in status.get("replicas") or []:
        host, _, port = str(r.get("address", "")).rpartition(":")
        admin = str(r.get("admin") or "")
        admin_port = int(admin.rsplit(":", 1)[1]) if admin.count(":") == 2 else None
        if host and port.isdigit():
            by_pool.setdefault((r["region"], r["pool"]), []).append(
                Endpoint(host, int(port), admin_port, r.get("name")))
    return EndpointDirectory({k: tuple(sorted(v)) for k, v in by_pool.items()})
