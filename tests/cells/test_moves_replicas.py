"""Moves with several control-plane replicas (cells/moves.py): each replica sees only the Envoys connected to
it. A replica with none of the new cell's Envoys switches its front on the fallback, and no replica's old
cell drops the tenant before such a front has switched and drained; a replica with no front-tier Envoy
still lets the old cell go. Driven through the real snapshot store, each Envoy's acknowledgement recorded
as the xDS server records it; the clock is the test's."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from envoy.config.route.v3 import scoped_route_pb2

from xds_server.cells.keys import FRONT, snapshot_key
from xds_server.cells.moves import _UNSEEN_WAIT_S, Moves
from xds_server.compiler import naming
from xds_server.snapshot import Resource, Snapshot
from xds_server.xds.store import NodeStatus, SnapshotStore

REGION = "us-east-1"
TENANT = "acme"


def _config(assigned: dict[str, str]) -> Any:
    return SimpleNamespace(cells={REGION: assigned})  # views reads only the placement


class Replica:
    """One control-plane replica: its moves' books, its store, the Envoys connected to it."""

    def __init__(self, clock: list[float], envoys: list[str]) -> None:
        self.moves = Moves(drain_seconds=5.0, replicated=True, clock=lambda: clock[0])
        self.store = SnapshotStore()
        self.nodes: dict[str, NodeStatus] = {
            cell: self.store.open_stream(f"{cell}-envoy", snapshot_key(REGION, cell), "delta", cell=cell)
            for cell in envoys}
        self.published = 0
        self.assigned: dict[str, str] = {}

    def views(self, assigned: dict[str, str], first: bool = False) -> None:
        """What the control plane does on a reload: the views, published, then applied by every Envoy here."""
        self.assigned = assigned
        self._publish(self.moves.views(_config(assigned), first)[REGION])

    def step(self) -> None:
        """What the moves' follower does on each tick."""
        if self.moves.advance(self.store):
            self._publish(self.moves.views(_config(self.assigned))[REGION])

    def _publish(self, view: Any) -> None:
        self.published += 1
        for cell in ("c0", "c1"):
            scopes = [Resource.pack(naming.tenant_scope(t), scoped_route_pb2.ScopedRouteConfiguration(
                name=naming.tenant_scope(t), route_configuration_name=naming.tenant_routes(t)))
                for t in sorted(view.members.get(cell, ()))]
            self.store.set_snapshot(snapshot_key(REGION, cell), Snapshot.build(f"{cell}-{self.published}", scopes))
        front = [Resource.pack(f"front/{t}/{c}", scoped_route_pb2.ScopedRouteConfiguration(name=f"{t}/{c}"))
                 for t, c in sorted(view.front.items())]
        self.store.set_snapshot(snapshot_key(REGION, FRONT), Snapshot.build(f"front-{self.published}", front))
        self.moves.published(self.store)
        for cell, node in self.nodes.items():
            pub = self.store.published(snapshot_key(REGION, cell))
            assert pub is not None
            self.store.record_applied(node, pub)

    def front(self) -> str | None:
        return self.moves.views_front(REGION).get(TENANT)

    def old_cell_holds(self) -> bool:
        pub = self.store.published(snapshot_key(REGION, "c0"))
        assert pub is not None
        return naming.tenant_scope(TENANT) in pub.snapshot.resources.get(
            "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration", {})


def _run(replicas: list[Replica], clock: list[float], until: float) -> list[tuple[float, list[str | None], list[bool]]]:
    """Tick every replica each 0.5 s up to `until`: when each front sends the tenant where, and whether each old
    cell still holds it."""
    seen = []
    while clock[0] < until:
        clock[0] += 0.5
        for r in replicas:
            r.step()
        seen.append((clock[0], [r.front() for r in replicas], [r.old_cell_holds() for r in replicas]))
    return seen


def test_no_old_cell_lets_go_before_every_replicas_front_has_switched() -> None:
    clock = [0.0]
    # R1 has no Envoy of the new cell c1 (it cannot see c1 apply); R2 has one. Both have a front and an old cell.
    r1, r2 = Replica(clock, ["c0", FRONT]), Replica(clock, ["c0", "c1", FRONT])
    for r in (r1, r2):
        r.views({TENANT: "c0", "other": "c1"}, first=True)
    for r in (r1, r2):
        r.views({TENANT: "c1", "other": "c1"})  # both load the move at the same moment
    seen = _run([r1, r2], clock, 3 * _UNSEEN_WAIT_S)
    r2_switched = min(t for t, fronts, _ in seen if fronts[1] == "c1")
    r1_switched = min(t for t, fronts, _ in seen if fronts[0] == "c1")
    assert r2_switched <= 1.0  # on its own Envoy's acknowledgement
    assert _UNSEEN_WAIT_S <= r1_switched <= _UNSEEN_WAIT_S + 1.0  # on the fallback
    # While any front still sends the tenant to c0, every replica's c0 holds it: c0's Envoys take requests
    # from every replica's fronts.
    for t, fronts, holds in seen:
        if "c0" in fronts:
            assert all(holds), (t, fronts, holds)
    dropped = [min(t for t, _, holds in seen if not holds[k]) for k in range(2)]
    assert all(d >= r1_switched + 5.0 for d in dropped), (dropped, r1_switched)  # and drained
    assert not r1.moves.pending() and not r2.moves.pending()


def test_a_replica_with_no_front_envoy_still_lets_the_old_cell_go() -> None:
    clock = [0.0]
    r = Replica(clock, ["c0", "c1"])  # the front tier's Envoys are all connected to other replicas
    r.views({TENANT: "c0"}, first=True)
    r.views({TENANT: "c1"})
    seen = _run([r], clock, 4 * _UNSEEN_WAIT_S)
    assert seen[-1][1] == ["c1"] and seen[-1][2] == [False]  # switched, and c0 let go
    assert not r.moves.pending()
