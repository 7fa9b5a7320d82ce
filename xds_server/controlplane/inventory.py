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
from xds_server.listing import DEFAULT_LIMIT, capped, capped_lines, clipped

# A failed load's reason in the table (the runtime's can be a long exception); --json has it whole.
REASON_SHOWN = 60


@dataclass
class Residency:
    replica: str
    version: str
    state: str
    reason: str = ""
    bytes: int | None = None
    region: str = ""
    pool: str = ""


@dataclass
class ModelRow:
    model: str  # `owner:name` for an own model, the catalog name otherwise
    owner: str | None  # None: a catalog model
    format: str
    pools: list[str]
    # version -> percent of the split (None: a catalog model listed for no tenant: each tenant has its own)
    versions: dict[str, int | None]
    regions: list[str]  # where it is routed (with --tenant: where that tenant is served it)
    resident: list[Residency] = field(default_factory=list)
    # region -> how many replicas of its pools were asked there (empty: no replica known at all)
    replicas: dict[str, int] = field(default_factory=dict)
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
        """The table, one row per model, each row a few words per region (`us-east-1 2/2`: READY on 2 of
        the 2 replicas asked there); every replica by name is in --json."""
        header = ("MODEL", "FORMAT", "POOL", "VERSIONS", "REGIONS (READY/REPLICAS)", "HIT RATE", "STATE")
        table = [header]
        for r in self.rows:
            versions = " ".join(v if pct is None else f"{v}={pct}%" for v, pct in r.versions.items())
            rate = "-" if r.hit_rate is None else f"{100 * r.hit_rate:.0f}% of {r.hits + r.misses:,}"
            ready = any(x.state.upper() == "READY" for x in r.resident)
            state = _failures(r) or ("ready" if ready else "not loaded")
            table.append((r.model, r.format, ",".join(r.pools), versions, _where(r), rate, state))
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                         for row in table)

    def warnings(self, limit: int | None = DEFAULT_LIMIT) -> list[str]:
        """The replicas whose index could not be read, the first `limit` of them (None: all), for stderr."""
        return capped_lines(self.unreachable, limit, "warning: ", "replicas not readable (--json lists every one)")


def _where(r: ModelRow) -> str:
    """`eu-west-1 2/2, us-east-1 1/2@v1 2/2@v2`: per region, on how many of the replicas asked there each
    version is READY (one count when every version has the same); the bare regions when no replica is known."""
    ready: dict[str, dict[str, set[str]]] = {}
    for x in r.resident:
        if x.state.upper() == "READY":
            ready.setdefault(x.region, {}).setdefault(x.version, set()).add(x.replica)
    regions = r.regions + sorted(set(ready) - set(r.regions))  # still resident where it is no longer routed
    if not r.replicas:
        return capped(regions) or "-"
    parts = []
    for region in regions:
        total = r.replicas.get(region, 0)
        counts = {v: len(ready.get(region, {}).get(v, ())) for v in [*r.versions, *sorted(ready.get(region, {}))]}
        if len(set(counts.values())) <= 1:
            parts.append(f"{region} {next(iter(counts.values()), 0)}/{total}")
        else:
            parts.append(f"{region} " + " ".join(f"{n}/{total}@{v}" for v, n in counts.items() if n))
    return capped(parts) or "-"


def _failures(r: ModelRow) -> str:
    """`FAILED@v1 (us-east-1 2/2): sha256 mismatch ...`: per version and reason, on how many of the replicas
    asked in each region; the first two, each reason clipped (--json has every replica and reason whole)."""
    failed: dict[tuple[str, str], dict[str, set[str]]] = {}
    for x in r.failed:
        failed.setdefault((x.version, x.reason), {}).setdefault(x.region, set()).add(x.replica)
    out = []
    for (version, reason), where in failed.items():
        counts = capped(f"{g} {len(names)}/{r.replicas.get(g, 0)}" for g, names in sorted(where.items()))
        out.append(f"FAILED@{version} ({counts}): {clipped(reason, REASON_SHOWN) or 'no reason given'}")
    return capped(out, limit=2, sep="; ")


def declared(cfg: PlatformConfig, tenant: str | None = None) -> list[ModelRow]:
    """The models of the config, not yet joined with replicas. With `tenant`: only those it may call, each
    with the versions it is granted (and their split) and the regions it is served them in."""
    rows: list[ModelRow] = []
    who = cfg.tenants[tenant] if tenant is not None else None
    for name, model in sorted(cfg.models.items()):
        versions: dict[str, int | None]
        if who is None:
            versions = dict.fromkeys(sorted(model.versions))
            regions = sorted({r for v in model.versions for r in cfg.version_regions(name, v)})
        elif name in who.spec.models:
            versions = {v: pct for v, pct in sorted(who.spec.models[name].split.items()) if v in model.versions}
            regions = sorted(r for r, held in who.routes.items() if name in held)
        else:
            continue
        used = [model.versions[v] for v in versions]
        rows.append(ModelRow(model=name, owner=None, format=",".join(sorted({mv.loader for mv in used})),
                             pools=sorted({mv.pool for mv in used}), versions=versions, regions=regions))
    for tid, t in sorted(cfg.tenants.items()):
        if tenant is not None and tid != tenant:
            continue
        for name, om in sorted(t.spec.own_models.items()):
            regions = sorted(r for r, names in t.own_routes.items() if name in names)
            rows.append(ModelRow(model=f"{tid}:{name}", owner=tid, format=str(om.format), pools=[om.pool],
                                 versions={v: om.split.get(v, 0) for v in sorted(om.versions)}, regions=regions))
    return rows


def serving(cfg: PlatformConfig, endpoints: EndpointDirectory) -> EndpointDirectory:
    """Only the config's serving pools (`regions[r].pools`): a status page or endpoints file also lists each
    cell's gateways (pool `gateway.<cell>`), which hold no models and have no admin port."""
    return EndpointDirectory({(region, pool): eps for (region, pool), eps in endpoints.by_pool.items()
                              if region in cfg.regions and cfg.regions[region].pool(pool) is not None})


def build(cfg: PlatformConfig, endpoints: EndpointDirectory, tenant: str | None = None,
          timeout: float = repository.TIMEOUT_S, *, client: AdminClient) -> Inventory:
    rows = declared(cfg, tenant)
    by_name = {r.model: r for r in rows}
    replicas = serving(cfg, endpoints).by_pool
    if tenant is not None:  # only the replicas of the regions the tenant is served in
        where_served = {g for r in rows for g in r.regions}
        replicas = {k: eps for k, eps in replicas.items() if k[0] in where_served}
    if replicas:  # each row's denominators: its pools' replicas in each region it is routed (or held) in
        known = {g for g, _ in replicas}
        for r in rows:
            asked = {g: sum(len(replicas.get((g, p), ())) for p in r.pools) for g in known}
            r.replicas = {g: asked.get(g, 0) for g in sorted({*r.regions, *(g for g, n in asked.items() if n)})}
    unreachable: list[str] = []
    for (region, pool), eps in sorted(replicas.items()):
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
                version = str(entry.get("version", ""))
                if tenant is not None and (region not in row.regions or version not in row.versions):
                    continue  # a version or region the tenant is not served
                row.resident.append(Residency(
                    replica=where, version=version, state=str(entry.get("state", "")),
                    reason=str(entry.get("reason", "") or ""),
                    bytes=entry["bytes"] if isinstance(entry.get("bytes"), int) else None, region=region, pool=pool))
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
