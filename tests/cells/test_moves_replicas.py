"""Moves with several control-plane replicas (cells/moves.py, cells/peers.py): each replica sees only the
Envoys connected to it.

Without peers: a replica with none of the new cell's Envoys switches its front on the fallback, and no
replica's old cell drops the tenant before such a front has switched and drained; a replica with no
front-tier Envoy still lets the old cell go. With peers (each replica's answers on a real HTTP server):
every step waits until every replica vouched for its Envoys, so a replica without the new cell's Envoys
switches within a second, a replica that loads the move late holds everyone back until its Envoys have
it, and a replica that does not answer holds every step. Driven through the real snapshot store, each
Envoy's acknowledgement recorded as the xDS server records it; the clock is the test's."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from envoy.config.route.v3 import scoped_route_pb2

from xds_server.cells import peers
from xds_server.cells.keys import FRONT, snapshot_key
from xds_server.cells.moves import _UNSEEN_WAIT_S, Moves, PeerWord
from xds_server.compiler import naming
from xds_server.local.processes import free_port
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

    def step(self, word: PeerWord | None = None) -> None:
        """What the moves' follower does on each tick."""
        if self.moves.advance(self.store, word):
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


def _load(replicas: list[Replica], before: dict[str, str], after: dict[str, str]) -> None:
    """Every replica's first load of `before`, then the move to `after`, loaded at the same moment."""
    for r in replicas:
        r.views(before, first=True)
    for r in replicas:
        r.views(after)


def test_no_old_cell_lets_go_before_every_replicas_front_has_switched() -> None:
    clock = [0.0]
    # R1 has no Envoy of the new cell c1 (it cannot see c1 apply); R2 has one. Both have a front and an old cell.
    r1, r2 = Replica(clock, ["c0", FRONT]), Replica(clock, ["c0", "c1", FRONT])
    _load([r1, r2], {TENANT: "c0", "other": "c1"}, {TENANT: "c1", "other": "c1"})
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


class Peered:
    """Replicas each answering on a real HTTP server (peers.add_routes), each asking all of them."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.runners: list[web.AppRunner] = []
        self.asking: list[peers.Peers] = []

    async def start(self) -> None:
        addresses = []
        for k, r in enumerate(self.replicas):
            app = web.Application()
            peers.add_routes(app, r.moves, r.store, f"r{k}")
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.runners.append(runner)
            addresses.append(f"127.0.0.1:{runner.addresses[0][1]}")
        self.asking = [peers.Peers(tuple(addresses), replica=f"r{k}", timeout_s=1.0) for k in range(len(self.replicas))]

    async def run(self, clock: list[float], until: float, load_late: tuple[int, float, dict[str, str]] | None = None,
                  ) -> list[tuple[float, list[str | None], list[bool]]]:
        seen = []
        while clock[0] < until:
            clock[0] += 0.5
            if load_late is not None and clock[0] >= load_late[1]:
                self.replicas[load_late[0]].views(load_late[2])
                load_late = None
            for r, asking in zip(self.replicas, self.asking, strict=True):
                r.step(await asking.word(*r.moves.questions()))
            seen.append((clock[0], [r.front() for r in self.replicas], [r.old_cell_holds() for r in self.replicas]))
        return seen

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


def _first(seen: list[tuple[float, list[str | None], list[bool]]], k: int, front: str) -> float:
    return min(t for t, fronts, _ in seen if fronts[k] == front)


def _no_request_lost(seen: list[tuple[float, list[str | None], list[bool]]]) -> None:
    for t, fronts, holds in seen:
        if "c0" in fronts:
            assert all(holds), (t, fronts, holds)


def test_with_peers_a_replica_without_the_new_cells_envoys_switches_on_their_word() -> None:
    async def scenario() -> None:
        clock = [0.0]
        r1, r2 = Replica(clock, ["c0", FRONT]), Replica(clock, ["c0", "c1", FRONT])
        net = Peered([r1, r2])
        await net.start()
        try:
            _load([r1, r2], {TENANT: "c0", "other": "c1"}, {TENANT: "c1", "other": "c1"})
            seen = await net.run(clock, 20.0)
        finally:
            await net.close()
        assert _first(seen, 0, "c1") <= 1.0 and _first(seen, 1, "c1") <= 1.0  # not the 30 s fallback
        _no_request_lost(seen)
        dropped = [min(t for t, _, holds in seen if not holds[k]) for k in range(2)]
        assert all(max(_first(seen, 0, "c1"), _first(seen, 1, "c1")) + 5.0 <= d <= 8.0 for d in dropped), dropped
        assert not r1.moves.pending() and not r2.moves.pending()

    asyncio.run(scenario())


def test_with_peers_a_replica_that_loads_the_move_late_holds_everyone_back() -> None:
    async def scenario() -> None:
        clock = [0.0]
        r1, r2 = Replica(clock, ["c0", "c1", FRONT]), Replica(clock, ["c0", "c1", FRONT])
        net = Peered([r1, r2])
        await net.start()
        try:
            for r in (r1, r2):
                r.views({TENANT: "c0"}, first=True)
            r1.views({TENANT: "c1"})  # r2 sees the change 12 s later (a ConfigMap volume lagging)
            seen = await net.run(clock, 30.0, load_late=(1, 12.0, {TENANT: "c1"}))
        finally:
            await net.close()
        # r1's c1 Envoy has the tenant at once, r2's (which r1's fronts also send to) only once r2 loaded it.
        assert 12.0 <= _first(seen, 0, "c1") <= 13.5, seen[:30]
        _no_request_lost(seen)
        assert seen[-1][1] == ["c1", "c1"] and seen[-1][2] == [False, False]

    asyncio.run(scenario())


def test_with_peers_a_replica_that_does_not_answer_holds_every_step() -> None:
    async def scenario() -> None:
        clock = [0.0]
        r1, r2 = Replica(clock, ["c0", FRONT]), Replica(clock, ["c0", "c1", FRONT])
        net = Peered([r1, r2])
        await net.start()
        try:
            _load([r1, r2], {TENANT: "c0"}, {TENANT: "c1"})
            # r1 cannot reach r2 (a partition): r2 hears r1, r1 does not hear r2.
            unreachable = f"127.0.0.1:{free_port()}"
            net.asking[0] = peers.Peers((net.asking[0].addresses[0], unreachable), replica="r0", timeout_s=1.0)
            seen = await net.run(clock, 3 * _UNSEEN_WAIT_S)
        finally:
            await net.close()
        assert all(fronts[0] == "c0" for _, fronts, _ in seen)  # r1 never switches: no word from r2's c1
        assert net.asking[0].last[unreachable] != "ok"  # and says why (status)
        assert _first(seen, 1, "c1") <= 1.0  # r2 switched on its own Envoy's and r1's word
        _no_request_lost(seen)  # but keeps c0 until r1's fronts have switched: they never did

    asyncio.run(scenario())


def test_a_replica_vouches_only_for_what_its_envoys_applied() -> None:
    clock = [0.0]
    r = Replica(clock, ["c0", FRONT])
    r.views({TENANT: "c0"}, first=True)
    c0, c1 = snapshot_key(REGION, "c0"), snapshot_key(REGION, "c1")
    held, routed = r.moves.vouch(r.store, [(c0, TENANT), (c1, TENANT), (c0, "stranger")],
                                 [(REGION, TENANT, "c0"), (REGION, TENANT, "c1")])
    # c0's Envoy holds it; no Envoy of c1 here (0: nothing here serves it); c0's does not hold a stranger.
    assert held == [1, 0, None]
    assert routed == [1, None]  # the front here sends it to c0, not c1


def test_a_malformed_question_is_a_clear_400() -> None:
    async def scenario() -> tuple[int, dict[str, Any]]:
        r = Replica([0.0], [])
        app = web.Application()
        peers.add_routes(app, r.moves, r.store, "r0")
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{peers.PATH}"
        try:
            return await asyncio.to_thread(_post, url, {"held": [["us-east-1/c0"]], "routed": []})
        finally:
            await runner.cleanup()

    status, body = asyncio.run(scenario())
    assert status == 400 and "held[0] must be a list of 2 strings" in body["error"]


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.mark.parametrize("address", ["nowhere.invalid:18001"])
def test_a_peer_name_that_does_not_resolve_vouches_for_nothing(address: str) -> None:
    asking = peers.Peers((address,), replica="r0")
    word = asyncio.run(asking.word([(snapshot_key(REGION, "c1"), TENANT)], []))
    assert word.held == {} and "not resolved" in asking.last[address]


def test_many_questions_go_in_several_requests_and_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell added moves thousands of tenants: their questions are split under the request size limit."""
    monkeypatch.setattr(peers, "MAX_QUESTIONS", 4)
    clock = [0.0]
    here, there = Replica(clock, ["c0", FRONT]), Replica(clock, ["c0", FRONT])
    tenants = {f"t{i}": "c0" for i in range(7)}
    for r in (here, there):
        r.views(tenants, first=True)

    async def scenario() -> PeerWord:
        net = Peered([here, there])
        await net.start()
        try:
            c0 = snapshot_key(REGION, "c0")
            return await net.asking[0].word([(c0, t) for t in tenants] + [(c0, "stranger")],
                                            [(REGION, t, "c0") for t in tenants])
        finally:
            await net.close()

    word = asyncio.run(scenario())
    c0 = snapshot_key(REGION, "c0")
    assert word.held == {(c0, t): 1 for t in tenants}  # the other replica's one c0 Envoy; a stranger not vouched
    assert word.routed == {(REGION, t, "c0"): 1 for t in tenants}


def test_an_answer_of_the_wrong_shape_vouches_for_nothing() -> None:
    """A peer that answers nonsense (another service on the port, a version that answers otherwise) is a peer
    that did not answer: nothing is vouched, and the reason is kept for the status."""
    async def scenario() -> tuple[PeerWord, str]:
        app = web.Application()

        async def odd(_: web.Request) -> web.Response:
            return web.json_response({"replica": "other", "held": 3, "routed": []})

        app.router.add_post(peers.PATH, odd)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        address = f"127.0.0.1:{runner.addresses[0][1]}"
        asking = peers.Peers((address,), replica="r0")
        try:
            return await asking.word([(snapshot_key(REGION, "c1"), TENANT)], []), asking.last[address]
        finally:
            await runner.cleanup()

    word, why = asyncio.run(scenario())
    assert word.held == {} and "does not match the questions" in why
