"""What the compiler builds for a region split into cells: each cell's snapshot holds its tenants and no
other, the front tier holds a table of every tenant and a cluster per cell, and a pod change republishes
endpoint sets only, equal to a full compile (the front's cell gateways included)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from bench.synth import small_config
from tests.compiler.test_compile import JWKS
from xds_server.cells.keys import snapshot_key
from xds_server.compiler import CompileInputs, Compiler, Endpoint, EndpointDirectory, naming
from xds_server.config import load_config
from xds_server.local.processes import free_ports_in_a_row
from xds_server.snapshot import CLUSTER, ENDPOINT, ROUTE, SCOPED_ROUTE

REGION = "us-east-1"


def _split(root: Path, tenants: int = 40) -> Path:
    config = small_config(root, free_ports_in_a_row(4), replicas=1)
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 3}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    spec = yaml.safe_load((config / "tenants" / "acme.yaml").read_text())
    for i in range(tenants):
        (config / "tenants" / f"t{i:03d}.yaml").write_text(yaml.safe_dump({**spec, "id": f"t{i:03d}"}))
    return config


def test_each_cell_holds_its_tenants_and_the_front_routes_every_one(tmp_path: Path) -> None:
    cfg = load_config(_split(tmp_path))
    compiled = Compiler().compile(CompileInputs(cfg, EndpointDirectory(), JWKS))
    assigned = cfg.cells[REGION]
    assert REGION not in compiled.snapshots  # a split region has no region-wide snapshot
    for cell in ("c0", "c1", "c2"):
        scopes = set(compiled.snapshots[snapshot_key(REGION, cell)].of_type(SCOPED_ROUTE))
        assert scopes == {naming.tenant_scope(t) for t, c in assigned.items() if c == cell}
    front = compiled.snapshots[snapshot_key(REGION, "front")]
    assert set(front.of_type(CLUSTER)) == {"cell/c0", "cell/c1", "cell/c2"}
    assert not front.of_type(SCOPED_ROUTE)
    table = route_pb2.RouteConfiguration()
    front.of_type(ROUTE)[naming.FRONT_ROUTES].packed.Unpack(table)
    entries = table.virtual_hosts[0].matcher.matcher_tree.exact_match_map.map
    routed = {}
    for tenant, on_match in entries.items():
        route = route_components_pb2.Route()
        on_match.action.typed_config.Unpack(route)
        routed[tenant] = route.route.cluster
    assert routed == {t: f"cell/{c}" for t, c in assigned.items()}


def test_a_pod_change_in_a_split_region_equals_a_full_compile(tmp_path: Path) -> None:
    cfg = load_config(_split(tmp_path))
    before = EndpointDirectory({(REGION, "gateway.c1"): (Endpoint("127.0.0.1", 9001),)})
    after = EndpointDirectory({(REGION, "gateway.c1"): (Endpoint("127.0.0.1", 9001), Endpoint("10.0.0.7", 8080))})
    compiled = Compiler().compile(CompileInputs(cfg, before, JWKS))
    fast = Compiler.with_endpoints(compiled, cfg, after)
    full = Compiler().compile(CompileInputs(cfg, after, JWKS))
    assert fast.version == full.version != compiled.version
    for key, snap in full.snapshots.items():
        assert fast.snapshots[key].version == snap.version
        changed = {(t, n) for t, by_name in snap.resources.items() for n, r in by_name.items()
                   if compiled.snapshots[key].of_type(t).get(n) != r}
        assert all(t == ENDPOINT for t, _ in changed)
        assert bool(changed) == (key == snapshot_key(REGION, "front"))


def test_a_cell_taken_out_stays_reachable_from_the_front_until_its_tenants_have_moved(tmp_path: Path) -> None:
    """cells.shared 3 -> 2: c2's tenants move to c0 and c1, and until each one's new cell holds it the front
    still sends it to c2, so the front keeps c2's cluster and its gateways, and c2's snapshot still holds
    those tenants, kept current (also over a pod change)."""
    from xds_server.cells.moves import Moves

    root = _split(tmp_path)
    gateways = EndpointDirectory({(REGION, f"gateway.c{k}"): (Endpoint("127.0.0.1", 9001 + k),) for k in range(3)})
    moves, compiler = Moves(), Compiler()
    cfg = load_config(root)
    compiler.compile(CompileInputs(cfg, gateways, JWKS, cells=moves.views(cfg, first=True)))
    leaving = sorted(t for t, c in cfg.cells[REGION].items() if c == "c2")
    regions = yaml.safe_load((root / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2}
    (root / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    cfg = load_config(root)
    views = moves.views(cfg)
    assert leaving and all(views[REGION].front[t] == "c2" for t in leaving)  # still sent to c2
    for compiled in (out := compiler.compile(CompileInputs(cfg, gateways, JWKS, cells=views)),
                     Compiler.with_endpoints(out, cfg, gateways)):
        front = compiled.snapshots[snapshot_key(REGION, "front")]
        assert set(front.of_type(CLUSTER)) >= {naming.cell_cluster(c) for c in ("c0", "c1", "c2")}
        c2 = endpoint_pb2.ClusterLoadAssignment()
        front.of_type(ENDPOINT)[naming.cell_gateway_endpoints("c2", REGION)].packed.Unpack(c2)
        assert [e.endpoint.address.socket_address.port_value for e in c2.endpoints[0].lb_endpoints] == [9003]
        held = compiled.snapshots[snapshot_key(REGION, "c2")].of_type(SCOPED_ROUTE)
        assert set(held) == {naming.tenant_scope(t) for t in leaving}
    # Once nobody is left in c2 (settled), the front lets its cluster go, and c2 is compiled no more.
    settled = compiler.compile(CompileInputs(cfg, gateways, JWKS))
    assert naming.cell_cluster("c2") not in settled.snapshots[snapshot_key(REGION, "front")].of_type(CLUSTER)
    assert snapshot_key(REGION, "c2") not in settled.snapshots



def test_the_status_lists_a_cell_taken_out_while_its_tenants_move_out(tmp_path: Path) -> None:
    from xds_server.controlplane.service import ControlPlane
    from xds_server.status_table import render_cells
    from xds_server.xds.store import SnapshotStore

    root = _split(tmp_path)
    cp = ControlPlane(root, None, JWKS, SnapshotStore(), "127.0.0.1")
    assert cp.reload().ok
    assert cp.config is not None
    leaving = sum(1 for c in cp.config.cells[REGION].values() if c == "c2")
    regions = yaml.safe_load((root / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2}
    (root / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    assert cp.reload().ok
    status = cp.status()
    [c2] = [c for c in status["cells"] if c["cell"] == "c2"]  # type: ignore[union-attr]
    assert c2["removed"] and c2["moving_out"] == c2["tenants"] == leaving > 0
    [line] = [line for line in render_cells(status) if "c2 (removed)" in line]
    assert f"0/{leaving}" in line  # moving in / out


def _settle_every_move(moves: Any) -> None:
    """What Moves.advance does once every Envoy has acknowledged every step: each tenant in its new cell alone."""
    for region, arriving in moves._arriving.items():
        moves._front[region].update({t: move.cell for t, move in arriving.items()})
        arriving.clear()
        moves._leaving[region].clear()
        moves._last.pop(region, None)


def test_a_cell_taken_out_is_published_empty_once_its_last_tenants_have_moved_out(tmp_path: Path) -> None:
    """Its gateways outlive the move (the chart's second step removes them): they must not keep serving the
    routes of the tenants that left, so the move's last step publishes it once more, empty; after that it is
    compiled no more."""
    from xds_server.controlplane.service import ControlPlane
    from xds_server.xds.store import SnapshotStore

    root = _split(tmp_path)
    store = SnapshotStore()
    cp = ControlPlane(root, None, JWKS, store, "127.0.0.1")
    assert cp.reload().ok
    c2 = snapshot_key(REGION, "c2")
    regions = yaml.safe_load((root / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2}
    (root / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    assert cp.reload().ok
    held = store.get(c2)
    assert held is not None and held.of_type(SCOPED_ROUTE)  # moving out: c2 still serves them
    _settle_every_move(cp.moves)
    assert cp.config is not None
    asyncio.run(cp._recompose(cp.config))  # the moves' last step, as _follow_moves publishes it
    emptied = store.get(c2)
    assert emptied is not None and not emptied.of_type(SCOPED_ROUTE) and emptied.version != held.version
    assert cp.compiled is not None and c2 in cp.compiled.snapshots
    assert cp.reload().ok  # nothing left to empty: c2 is no longer compiled, nor listed
    assert c2 not in cp.compiled.snapshots
    assert store.get(c2) is emptied
    assert all(c["cell"] != "c2" for c in cp.status()["cells"])  # type: ignore[union-attr]
    front = cp.compiled.snapshots[snapshot_key(REGION, "front")]
    assert naming.cell_cluster("c2") not in front.of_type(CLUSTER)
