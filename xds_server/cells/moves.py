"""Moving tenants between cells with no failed request (docs/design/0005).

A tenant whose assigned cell changes (a new cell, a pin, a rebalance) goes through three steps, each
waiting for Envoy's acknowledgement, never for a timer alone:

1. **arriving**: the new cell's snapshot gets the tenant while the front tier still sends it to the old
   cell (both cells hold it). It waits until every Envoy of the new cell connected here has applied a
   snapshot that holds the tenant.
2. **switching**: the front tier's table sends it to the new cell. It waits until every front-tier Envoy
   connected here has applied that table, then `platform.cells.drain_seconds` more, so requests the old
   cell already has finish.
3. **settled**: the old cell's snapshot drops the tenant.

A tenant new to a region waits at step 1 too (the front learns it once its cell serves it), except on the
control plane's first load, when nothing is serving yet and every tenant goes straight to its cell.

With several control-plane replicas each one sees only the Envoys connected to it, and a step is about
every Envoy of the cell or the front tier. Given its peers (cells/peers.py: `fairshare serve --peers`,
which the chart and `fairshare run --control-planes N` pass), a replica asks every replica before each
step and takes it only once each has vouched for its Envoys (`advance`'s `peers`, answered by `vouch`):
a replica that has not loaded the move yet, or does not answer, holds the step. Without peers, the
fallbacks: a replica that has none of the new cell's Envoys switches after `_UNSEEN_WAIT_S`, one that has
no front-tier Envoy counts its front as switched `_UNSEEN_WAIT_S` after its switch, and every old cell
keeps the tenant until `2 * _UNSEEN_WAIT_S` after the move began (or later, after its own fronts and the
drain), since the old cell's Envoys take requests from every replica's fronts. Those assume the replicas
load a change within a few seconds of each other and the new cell's Envoys apply it within
`_UNSEEN_WAIT_S`. With one replica a cell with no connected Envoy never gets its tenants' traffic:
`fairshare status` shows them moving in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from xds_server.cells.keys import FRONT, snapshot_key
from xds_server.cells.view import CellView, changed_tenants, members_by_cell
from xds_server.compiler import naming
from xds_server.config.model import PlatformConfig
from xds_server.snapshot import SCOPED_ROUTE
from xds_server.xds.store import NodeStatus, SnapshotStore

_UNSEEN_WAIT_S = 30.0


@dataclass
class _Arriving:
    cell: str
    since: float  # when the move began (for a replica that cannot see the new cell's Envoys)
    seq: int | None = None  # the first publication of the new cell that held the tenant


@dataclass
class _Leaving:
    cell: str  # the old cell, which keeps the tenant until the front has switched and drained
    began: float = 0.0  # when the move began (its _Arriving's since)
    switched: float = 0.0  # when this replica's front switched it
    front_seq: int | None = None  # the first front publication that sent the tenant to its new cell
    until: float | None = None  # when the old cell may drop it


@dataclass
class Moves:
    drain_seconds: float = 5.0
    # With more than one control-plane replica and no word from them (no peers): switch after _UNSEEN_WAIT_S
    # when no Envoy of the new cell is connected to this one, and keep old cells longer (the docstring).
    replicated: bool = False
    clock: Callable[[], float] = time.monotonic
    _front: dict[str, dict[str, str]] = field(default_factory=dict)  # region -> tenant -> cell the front uses
    _arriving: dict[str, dict[str, _Arriving]] = field(default_factory=dict)
    _leaving: dict[str, dict[str, _Leaving]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Per region, the last view and what it was computed from: with nothing moving and the same placement
    # (an edit to a tenant's spec, nearly every change) the view is the same, and 100,000 tenants need not be
    # walked again (0.2 s).
    # The placement's own dict is kept too: the same object (the loader keeps it while nobody moves) needs
    # no comparison.
    _last: dict[str, tuple[dict[str, str], CellView, Mapping[str, str]]] = field(default_factory=dict)
    # Per region, the placement the books were last brought up to date with (a copy, and the mapping it came
    # from) and each cell's tenants in it: a new placement is compared with it, and only the tenants it
    # changed are looked at again (onboarding one among 100,000: 0.2 s to walk them all).
    _placed: dict[str, _Placed] = field(default_factory=dict)

    def views(self, cfg: PlatformConfig, first: bool = False) -> dict[str, CellView]:
        """What each cell's snapshot holds and where the front sends each tenant, for this config; starts the
        moves it implies. `first`: nothing is serving yet, so every tenant goes straight to its cell."""
        now = self.clock()
        with self._lock:
            for region in set(self._front) - set(cfg.cells):
                self._forget(region)
            out: dict[str, CellView] = {}
            for region, assigned in cfg.cells.items():
                kept = self._last.get(region)
                if (kept is not None and not first and not self._arriving.get(region) and not self._leaving.get(region)
                        and (kept[2] is assigned or kept[0] == assigned)):
                    out[region] = kept[1]
                    self._last[region] = (kept[0], kept[1], assigned)  # an equal copy: compared once
                    continue
                front = self._front.setdefault(region, {})
                arriving = self._arriving.setdefault(region, {})
                leaving = self._leaving.setdefault(region, {})
                placed = self._placed.get(region)
                touched = placed.changed(assigned) if placed is not None and not first else None
                if placed is None or touched is None:  # everyone: a first load, or a new placement for most
                    placed = _Placed.of(assigned)
                    touched = [*assigned, *(t for t in {*front, *arriving, *leaving} if t not in assigned)]
                else:
                    placed = placed.after(assigned, touched)
                self._placed[region] = placed
                # A tenant the placement did not change is as the last views left it (settled, or moving to the
                # cell it still has): nothing to do for it.
                for tenant in touched:
                    cell = assigned.get(tenant)
                    if cell is None:  # offboarded or no longer served here
                        for book in (front, arriving, leaving):
                            book.pop(tenant, None)
                        continue
                    current = front.get(tenant)
                    if first and current is None:
                        front[tenant] = cell
                    elif current != cell:
                        move = arriving.get(tenant)
                        if move is None or move.cell != cell:
                            arriving[tenant] = _Arriving(cell, now)
                    else:
                        arriving.pop(tenant, None)
                    gone = leaving.get(tenant)
                    if gone is not None and gone.cell == cell:
                        del leaving[tenant]  # moved back before its old cell let go: nothing to drop
                out[region] = self._view(region, placed)
                self._last[region] = (placed.assigned, out[region], assigned)
            return out

    def _view(self, region: str, placed: _Placed) -> CellView:
        """Each cell's tenants in the placement, and those moving also in the cell they leave."""
        extra: dict[str, set[str]] = {}
        front = self._front[region]
        for tenant in self._arriving[region]:
            if (old := front.get(tenant)) is not None:
                extra.setdefault(old, set()).add(tenant)
        for tenant, gone in self._leaving[region].items():
            extra.setdefault(gone.cell, set()).add(tenant)
        members = dict(placed.members)
        for cell, tenants in extra.items():
            members[cell] = members.get(cell, frozenset()) | tenants
        return CellView(members=members, front=dict(front))

    def advance(self, store: SnapshotStore, peers: PeerWord | None = None) -> bool:
        """Take every step whose acknowledgement has come; True if a cell's or the front's snapshot must
        change (the caller recompiles with `views`). `peers`: what the other control-plane replicas vouch for
        (cells/peers.py); None: no peers are known, and the fallbacks for unseen Envoys apply."""
        now = self.clock()
        changed = False
        nodes = _connected(store)
        with self._lock:
            for region in list(self._front):
                moved = False
                front, arriving, leaving = self._front[region], self._arriving[region], self._leaving[region]
                for tenant, move in list(arriving.items()):
                    key = snapshot_key(region, move.cell)
                    if move.seq is None:
                        move.seq = _holding(store, key, tenant)
                    if move.seq is None:
                        continue
                    if peers is None:
                        if not self._applied(nodes, key, move.seq, now - move.since):
                            continue
                    else:  # every Envoy of the new cell, wherever connected, holds it (and there is one)
                        here, there = _applied_count(nodes, key, move.seq), peers.held.get((key, tenant))
                        if here is None or there is None or here + there == 0:
                            continue
                    old = front.get(tenant)
                    front[tenant] = move.cell
                    del arriving[tenant]
                    if old is not None:
                        leaving[tenant] = _Leaving(old, began=move.since, switched=now)
                    moved = True
                front_key = snapshot_key(region, FRONT)
                for tenant, gone in list(leaving.items()):
                    if gone.front_seq is None:
                        continue  # the front's new table is not published yet: `published` records it
                    if gone.until is None:
                        if peers is None:
                            switched = self._applied(nodes, front_key, gone.front_seq, now - gone.switched)
                        else:  # every front Envoy, wherever connected, sends it to its new cell
                            switched = (_applied_count(nodes, front_key, gone.front_seq) is not None
                                        and (region, tenant, front[tenant]) in peers.routed)
                        if switched:
                            gone.until = now + self.drain_seconds
                            if self.replicated and peers is None:
                                # Another replica's fronts may switch only on the fallback (the docstring).
                                gone.until = max(gone.until, gone.began + 2 * _UNSEEN_WAIT_S)
                    if gone.until is not None and now >= gone.until:
                        del leaving[tenant]
                        moved = True
                if moved:
                    self._last.pop(region, None)  # the front or a cell's members moved on
                    changed = True
        return changed

    def published(self, store: SnapshotStore) -> None:
        """After views were published: the front publication each switched tenant waits for."""
        with self._lock:
            for region, leaving in self._leaving.items():
                pub = store.published(snapshot_key(region, FRONT))
                for gone in leaving.values():
                    if gone.front_seq is None and pub is not None:
                        gone.front_seq = pub.seq

    def _applied(self, nodes: Mapping[str, list[NodeStatus]], key: str, seq: int, waited: float) -> bool:
        count = _applied_count(nodes, key, seq)
        if count == 0:
            return self.replicated and waited >= _UNSEEN_WAIT_S
        return count is not None

    def questions(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
        """What the pending steps wait for, to ask the other replicas: (snapshot key, tenant) for each tenant
        arriving in a cell, (region, tenant, new cell) for each whose old cell waits on the fronts."""
        with self._lock:
            held = [(snapshot_key(region, move.cell), tenant)
                    for region, arriving in self._arriving.items() for tenant, move in arriving.items()]
            routed = [(region, tenant, self._front[region][tenant])
                      for region, leaving in self._leaving.items() for tenant in leaving]
        return held, routed

    def vouch(self, store: SnapshotStore, held: list[tuple[str, str]], routed: list[tuple[str, str, str]],
              ) -> tuple[list[int | None], list[int | None]]:
        """This replica's answers to another's questions: for each, how many Envoys connected here it vouches
        for (0: none connected here), or None where one of them has not applied it yet.

        held (snapshot key, tenant): every Envoy of that cell here has applied a snapshot holding the tenant.
        routed (region, tenant, cell): every front Envoy of the region here has applied a table that sends the
        tenant to that cell; judged from this replica's own books, so a replica that has not loaded the move
        yet, or is still waiting to switch it, says None."""
        nodes = _connected(store)
        out_held = [_applied_count(nodes, key, _holding(store, key, tenant)) for key, tenant in held]
        out_routed: list[int | None] = []
        with self._lock:
            for region, tenant, cell in routed:
                key = snapshot_key(region, FRONT)
                pub = store.published(key)
                gone = self._leaving.get(region, {}).get(tenant)
                seq = gone.front_seq if gone is not None else pub.seq if pub is not None else None
                switched = (self._front.get(region, {}).get(tenant) == cell
                            and tenant not in self._arriving.get(region, {}))
                out_routed.append(_applied_count(nodes, key, seq if switched else None))
        return out_held, out_routed

    def status(self) -> dict[str, dict[str, dict[str, int]]]:
        """region -> cell -> {moving_in, moving_out}."""
        with self._lock:
            out: dict[str, dict[str, dict[str, int]]] = {}
            for region, arriving in self._arriving.items():
                cells = out.setdefault(region, {})
                for tenant, move in arriving.items():
                    cells.setdefault(move.cell, {"moving_in": 0, "moving_out": 0})["moving_in"] += 1
                    if (old := self._front[region].get(tenant)) is not None:
                        cells.setdefault(old, {"moving_in": 0, "moving_out": 0})["moving_out"] += 1
            for region, leaving in self._leaving.items():
                cells = out.setdefault(region, {})
                for gone in leaving.values():
                    cells.setdefault(gone.cell, {"moving_in": 0, "moving_out": 0})["moving_out"] += 1
            return out

    def views_front(self, region: str) -> dict[str, str]:
        """tenant -> the cell the region's front tier sends it to."""
        with self._lock:
            return dict(self._front.get(region, {}))

    def routed(self, region: str) -> int:
        """How many tenants the region's front tier sends anywhere (for the status, without a copy)."""
        with self._lock:
            return len(self._front.get(region, {}))

    def pending(self) -> int:
        with self._lock:
            return sum(len(a) for a in self._arriving.values()) + sum(len(v) for v in self._leaving.values())

    def _forget(self, region: str) -> None:
        for book in (self._front, self._arriving, self._leaving, self._last, self._placed):
            book.pop(region, None)


@dataclass(frozen=True)
class _Placed:
    """A region's placement as the books last saw it, with each cell's tenants in it."""

    assigned: dict[str, str]
    members: dict[str, frozenset[str]]
    source: Mapping[str, str]

    @classmethod
    def of(cls, assigned: Mapping[str, str]) -> _Placed:
        return cls(dict(assigned), members_by_cell(assigned), assigned)

    def changed(self, assigned: Mapping[str, str]) -> list[str] | None:
        """The tenants `assigned` places otherwise (view.changed_tenants); none if it is the same mapping."""
        return [] if assigned is self.source else changed_tenants(self.assigned, assigned)

    def after(self, assigned: Mapping[str, str], changed: list[str]) -> _Placed:
        """This placement brought to `assigned`, which differs from it in `changed` alone."""
        gone: dict[str, set[str]] = {}
        came: dict[str, set[str]] = {}
        for tenant in changed:
            if (old := self.assigned.get(tenant)) is not None:
                gone.setdefault(old, set()).add(tenant)
            if (new := assigned.get(tenant)) is not None:
                came.setdefault(new, set()).add(tenant)
        members = dict(self.members)
        for cell in {*gone, *came}:
            tenants = (members.get(cell, frozenset()) - gone.get(cell, set())) | came.get(cell, set())
            if tenants:
                members[cell] = tenants
            else:
                members.pop(cell, None)
        return _Placed(dict(assigned), members, assigned)


# A publication no Envoy has applied: a question about it is answered 0 where no Envoy of it is connected
# (nothing here serves it), None where one is.
_NEVER = 1 << 62


@dataclass(frozen=True)
class PeerWord:
    """What every other control-plane replica vouched for (Moves.vouch, asked by cells/peers.py), summed over
    them: a question is missing where some replica did not vouch (its Envoys have not applied it yet, or it
    did not answer)."""

    held: Mapping[tuple[str, str], int]  # (snapshot key, tenant) -> the cell's Envoys at the peers
    routed: Mapping[tuple[str, str, str], int]  # (region, tenant, cell) -> front Envoys at the peers


def _connected(store: SnapshotStore) -> dict[str, list[NodeStatus]]:
    """Each snapshot key's connected Envoys, grouped once: a step or an answer asks about thousands of tenants
    (a cell added), each about a few of them."""
    out: dict[str, list[NodeStatus]] = {}
    for node in store.nodes():
        if node.connected:
            out.setdefault(node.region, []).append(node)
    return out


def _applied_count(nodes: Mapping[str, list[NodeStatus]], key: str, seq: int | None) -> int | None:
    """How many Envoys of `key` are connected here (`nodes`: `_connected`'s), if every one has applied
    publication `seq` or later; `seq` None: one no Envoy has applied."""
    here = nodes.get(key, [])
    target = _NEVER if seq is None else seq
    return len(here) if all(n.applied_seq >= target for n in here) else None


def _holding(store: SnapshotStore, key: str, tenant: str) -> int | None:
    """The seq of the publication of `key` now out, if it holds the tenant (its scope)."""
    pub = store.published(key)
    if pub is None or naming.tenant_scope(tenant) not in pub.snapshot.resources.get(SCOPED_ROUTE, {}):
        return None
    return pub.seq
