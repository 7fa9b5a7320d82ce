"""`fairshare status` for a person: the control plane's /status JSON as tables, in the manner of
`istioctl proxy-status`.

Pure functions from that JSON to text, so they are tested on recorded status and never reach a running
control plane. Three parts: one row per gateway (Envoy node) with each resource type SYNCED, STALE or
NOT SENT against what is published for its snapshot key, its last NACK and its memory; one row per cell
(region and cell) with its tenants, version, gateways and memory; then the config line. Times are ages
against the control plane's own clock (`xds.at`), so a reader on another machine sees the same ages.

Every field the JSON may lack (a control plane from before cells, a single-cell region, a node whose
stat sink has not reported yet) renders as blank or "-", never as an error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xds_server.listing import capped, clipped

# Status names of the resource types (xds_server.xds.store.short_type) and their column, in push order.
TYPES: tuple[tuple[str, str], ...] = (
    ("CDS", "Cluster"),
    ("LDS", "Listener"),
    ("EDS", "ClusterLoadAssignment"),
    ("RDS", "RouteConfiguration"),
    ("SRDS", "ScopedRouteConfiguration"),
)
_COLUMN = {short: column for column, short in TYPES}

SYNCED, STALE, NOT_SENT, NONE = "SYNCED", "STALE", "NOT SENT", "-"

# Rows shown before the rest become a count (`--all` shows every one); the JSON always has them all.
DEFAULT_MAX_ROWS = 50
# A NACK message or a refused reload is a paragraph (an Envoy rejection can name thousands of resources).
NACK_CHARS = 80
REASON_CHARS = 200


def age(seconds: float | None) -> str:
    """12s, 3m, 2h, 4d: the largest whole unit, as `kubectl get` prints ages."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def size(n: float | None) -> str:
    """Bytes as a person reads them: 812 KiB, 97.1 MiB, 1.02 GiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def snapshot_key(node: Mapping[str, Any]) -> str:
    """The snapshot a node follows: `<region>/<cell>` in a multi-cell region, else the region id
    (xds_server.cells.keys.snapshot_key; what the node says it follows, `snapshot`, wins when present)."""
    for field in ("snapshot", "key"):
        if node.get(field):
            return str(node[field])
    region, cell = node.get("region") or "", node.get("cell")
    return f"{region}/{cell}" if cell else region


def type_state(node: Mapping[str, Any], short: str, published: Mapping[str, Any] | None) -> str:
    """SYNCED when the node's ACK of this type holds the content published now, STALE when it holds an
    older one or rejected the newest, NOT SENT when it never ACKed the type, "-" when its snapshot has none."""
    ack = (node.get("acked") or {}).get(short)
    nack = node.get("last_nack")
    if nack is not None and nack.get("type") == short and (ack is None or nack.get("at", 0) >= ack.get("at", 0)):
        return STALE
    if ack is None:
        types = None if published is None else published.get("types")
        # Nothing of this type in what the node follows (a front tier has no scoped routes): nothing to send.
        return NONE if types is not None and short not in types else NOT_SENT
    if "current" in ack:  # the store compared contents (an unchanged type is not re-sent, its version lags)
        return SYNCED if ack["current"] else STALE
    version = None if published is None else published.get("version")
    return SYNCED if version is not None and ack.get("version") == version else STALE


@dataclass(frozen=True)
class GatewayRow:
    node_id: str
    region: str
    cell: str
    key: str
    connected: bool
    since: float | None
    states: tuple[str, ...]
    version: str
    memory: int | None
    nack: str

    @property
    def rank(self) -> int:
        """Worst first: a rejected config, then lagging, then gone, then not yet sent, then fine."""
        if self.nack and STALE in self.states:
            return 0
        if STALE in self.states:
            return 1
        if not self.connected:
            return 2
        if NOT_SENT in self.states:
            return 3
        return 4


def gateway_rows(status: Mapping[str, Any], now: float) -> list[GatewayRow]:
    xds = status.get("xds") or {}
    regions = xds.get("regions") or {}
    rows = []
    for node_id, node in (xds.get("nodes") or {}).items():
        key = snapshot_key(node)
        published = regions.get(key)
        nack = node.get("last_nack")
        nack_text = "" if nack is None else clipped(
            f"{_COLUMN.get(nack.get('type', ''), nack.get('type', '?'))} {age(now - nack['at'])} ago: "
            f"{nack.get('message', '')}", NACK_CHARS)
        memory = node.get("memory") or {}
        connected = bool(node.get("connected"))
        rows.append(GatewayRow(
            node_id=str(node_id), region=str(node.get("region") or "-"), cell=str(node.get("cell") or ""),
            key=key, connected=connected,
            since=node.get("connected_at") if connected else node.get("disconnected_at"),
            states=tuple(type_state(node, short, published) for _, short in TYPES),
            version=str(node.get("applied_version") or "-"), memory=memory.get("allocated"), nack=nack_text,
        ))
    rows.sort(key=lambda r: (r.rank, r.region, r.cell, r.node_id))
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, three spaces apart (the manner of `istioctl proxy-status`)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    return ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


def render_gateways(status: Mapping[str, Any], now: float, max_rows: int | None = DEFAULT_MAX_ROWS) -> list[str]:
    rows = gateway_rows(status, now)
    if not rows:
        return ["no gateways connected"]
    shown = rows if max_rows is None else rows[:max_rows]
    header = ("NAME", "REGION", "CELL", "CONNECTED", *(c for c, _ in TYPES), "VERSION", "MEMORY", "LAST NACK")
    lines = table(header, [
        (r.node_id, r.region, r.cell or "-",
         ("yes " if r.connected else "no ") + age(None if r.since is None else now - r.since),
         *r.states, r.version, size(r.memory), r.nack or "-")
        for r in shown
    ])
    rest = rows[len(shown):]
    if rest:
        counts: dict[str, int] = {}
        for r in rest:
            label = "NACKed" if r.rank == 0 else STALE if r.rank == 1 else "disconnected" if r.rank == 2 else (
                "partly NOT SENT" if r.rank == 3 else SYNCED)
            counts[label] = counts.get(label, 0) + 1
        lines.append(f"... and {len(rest):,} more gateways ("
                     + ", ".join(f"{n:,} {label}" for label, n in counts.items())
                     + "; --all shows every one, --json everything)")
    return lines


@dataclass(frozen=True)
class CellRow:
    region: str
    cell: str
    key: str
    tenants: int | None
    version: str
    connected: int
    applied: int
    moving_in: int | None
    moving_out: int | None
    memory: int | None
    gateways_reporting: int


def cell_rows(status: Mapping[str, Any]) -> list[CellRow]:
    """Each cell of the `cells` list (multi-cell regions), then each other published snapshot key (a
    single-cell region, a front tier) as its own row."""
    xds = status.get("xds") or {}
    regions: Mapping[str, Any] = xds.get("regions") or {}
    nodes = list((xds.get("nodes") or {}).values())
    memory: dict[str, list[int]] = {}
    for node in nodes:
        allocated = (node.get("memory") or {}).get("allocated")
        if node.get("connected") and allocated is not None:
            memory.setdefault(snapshot_key(node), []).append(int(allocated))
    listed = [dict(c) for c in status.get("cells") or []]
    for cell in listed:
        cell.setdefault("key", snapshot_key(cell))
    covered = {c["key"] for c in listed}
    for key in regions:
        if key not in covered:
            region, _, cell_name = key.partition("/")
            # A single-cell region's tenants are all the config's when it is the only region.
            tenants = status.get("tenants") if not cell_name and len(regions) == 1 else None
            listed.append({"region": region, "cell": cell_name or None, "key": key, "tenants": tenants})
    rows = []
    for cell in listed:
        key = cell["key"]
        published = regions.get(key) or {}
        held = memory.get(key, [])
        rows.append(CellRow(
            region=str(cell.get("region") or "-"),
            cell=str(cell.get("cell") or "") + (" (removed)" if cell.get("removed") else ""), key=key,
            tenants=cell.get("tenants"), version=str(cell.get("version") or published.get("version") or "-"),
            connected=int(published.get("nodes_connected") or 0), applied=int(published.get("nodes_applied") or 0),
            moving_in=cell.get("moving_in"), moving_out=cell.get("moving_out"),
            memory=sum(held) if held else None, gateways_reporting=len(held),
        ))
    # Cells with gateways behind first (what to look at), then by region and cell.
    rows.sort(key=lambda r: (r.applied >= r.connected > 0, r.region, r.cell))
    return rows


def render_cells(status: Mapping[str, Any], max_rows: int | None = DEFAULT_MAX_ROWS) -> list[str]:
    rows = cell_rows(status)
    if not rows:
        return ["no snapshot published yet"]
    shown = rows if max_rows is None else rows[:max_rows]

    def count(n: int | None) -> str:
        return "-" if n is None else f"{n:,}"

    lines = table(
        ("REGION", "CELL", "TENANTS", "VERSION", "GATEWAYS", "MOVING IN/OUT", "MEMORY"),
        [(r.region, r.cell, count(r.tenants), r.version, f"{r.applied}/{r.connected} applied",
          f"{count(r.moving_in)}/{count(r.moving_out)}" if r.moving_in is not None or r.moving_out is not None else "-",
          size(r.memory) + (f" ({r.gateways_reporting} gateways)" if r.gateways_reporting > 1 else ""))
         for r in shown])
    if len(rows) > len(shown):
        lines.append(f"... and {len(rows) - len(shown):,} more cells (--all shows every one)")
    return lines


# A reload in progress this long is named on the config line (a first load of 100,000 tenants takes a minute).
RELOADING_SHOWN_S = 5.0


def render_config(status: Mapping[str, Any], now: float) -> str:
    version = status.get("config_version") or "none"
    tenants = status.get("tenants")
    line = f"config {version}" + ("" if tenants is None else f" ({tenants:,} tenants)")
    since = status.get("reloading_since")
    if since is not None and now - since >= RELOADING_SHOWN_S:
        line += f"; a reload in progress for {age(now - since)}"
    last = status.get("last_reload")
    if last is None:
        return line + "; no reload yet"
    when = age(now - last["at"]) + " ago" if last.get("at") is not None else "-"
    if last.get("ok"):
        return line + f"; last reload ok {when}" + _reload_cost(last)
    reason = clipped(last.get("error") or "no reason given", REASON_CHARS)
    return line + f"; last reload REFUSED {when} (still serving {last.get('version') or 'nothing'}): {reason}"


def _reload_cost(last: Mapping[str, Any]) -> str:
    """How long the reload took and whether it read only the changed tenant files: ' (incremental, 0.08s:
    load 0.01s, compile 0.02s, validate 0.05s, publish 0.00s)'."""
    seconds = last.get("seconds") or {}
    if not seconds:
        return ""
    kind = "incremental" if last.get("incremental") else "full"
    parts = ", ".join(f"{name} {value:.2f}s" for name, value in seconds.items())
    return f" ({kind}, {sum(seconds.values()):.2f}s: {parts})"


def render(status: Mapping[str, Any], now: float | None = None, max_rows: int | None = DEFAULT_MAX_ROWS) -> str:
    """The whole `fairshare status` text; `max_rows` None shows every gateway and cell."""
    if now is None:
        now = float((status.get("xds") or {}).get("at") or time.time())
    parts = [*render_gateways(status, now, max_rows), "", *render_cells(status, max_rows), "",
             render_config(status, now)]
    offboarded = status.get("offboarded") or []
    if offboarded:
        parts.append(f"offboarded ({len(offboarded):,}): {capped(offboarded)}")
    peers = render_peers(status)
    if peers:
        parts.append(peers)
    audit = render_audit(status)
    if audit:
        parts.append(audit)
    return "\n".join(parts)


def render_audit(status: Mapping[str, Any]) -> str:
    """The audit trail's head (a copy of the trail must end there) and, loudly, a record it lost."""
    audit = status.get("audit")
    if not audit:
        return ""
    line = f"audit trail {audit['log']}: seq {audit['seq']}, head {audit.get('head') or '-'}"
    lost = audit.get("last_error")
    if audit.get("unrecorded"):
        line += (f"; {audit['unrecorded']} record(s) NOT WRITTEN, the last at {lost['at'] if lost else '-'} "
                 f"({lost['kind'] if lost else '-'}): {clipped(lost['error'] if lost else '', REASON_CHARS)}")
    return line


def render_peers(status: Mapping[str, Any]) -> str:
    """The other replicas asked about moves (xds_server/cells/peers.py): one line, naming those that did not
    answer last time (a move waits on them)."""
    peers = status.get("peers")
    if not peers:
        return ""
    answers: Mapping[str, str] = peers.get("answers") or {}
    silent = {target: why for target, why in answers.items() if why != "ok"}
    line = f"peers {', '.join(peers.get('addresses') or [])}"
    if not answers:
        return line + ": not asked yet (no move pending)"
    if not silent:
        return line + f": {len(answers)} answering"
    waiting = capped(f"{target} ({clipped(why, 200)})" for target, why in sorted(silent.items()))
    return f"{line}: moves wait on {waiting}"
