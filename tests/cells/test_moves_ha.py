"""A tenant moved between cells under load with two control-plane replicas, as `fairshare run
--control-planes 2` runs them (a Redis for their counters, every Envoy connected to one of the two): no
request fails, and the replicas asked each other about every step (xds_server/cells/peers.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cells.conftest import PINS, CellsPlatform, two_cell_config
from tests.cells.test_moves import _holds, _move
from xds_server.auth.keys import SigningKey
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CellsPlatform]:
    root = tmp_path_factory.mktemp("cells-ha")
    config = two_cell_config(root)
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(config_dir=config, state_dir=state, xds_port=free_port(),
                                             status_port=free_port(), control_planes=2))
    try:
        platform.start()
        yield CellsPlatform(platform, SigningKey.load_or_create(state), config)
    finally:
        platform.stop()


def _statuses(cells: CellsPlatform) -> list[dict[str, Any]]:
    return [cells.platform.control_plane_status(i) for i in range(len(cells.platform.control_plane_ports))]


def _wait_all_settled(cells: CellsPlatform, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = _statuses(cells)
        if all(s["last_reload"]["ok"] and not any(c["moving_in"] or c["moving_out"] for c in s["cells"])
               for s in statuses):
            return statuses
        time.sleep(0.1)
    raise AssertionError(f"still moving after {timeout}s: {[s['cells'] for s in _statuses(cells)]}")


def _connected(statuses: list[dict[str, Any]]) -> dict[str, int]:
    """Each Envoy's node id -> the replica it is connected to."""
    return {node: i for i, s in enumerate(statuses) for node, n in s["xds"]["nodes"].items() if n.get("connected")}


def test_a_move_with_two_replicas_loses_no_request_and_every_step_was_asked(replicated: CellsPlatform) -> None:
    tenant, old = "acme", PINS["acme"]
    new = next(c for c in set(PINS.values()) if c != old)
    statuses = _wait_all_settled(replicated)
    assert all(s["peers"] is not None and len(s["peers"]["addresses"]) == 2 for s in statuses)
    where = _connected(statuses)
    try:
        results, seen = _move(replicated, tenant, new)
        statuses = _wait_all_settled(replicated)
        failed = [r for r in results if r.status != 200]
        assert not failed, f"{len(failed)} of {len(results)} failed while {tenant} moved (Envoys at {where}): " \
                           f"{failed[:3]}"
        assert seen["moving"], "the status never showed the tenant moving"
        assert _holds(replicated, new, tenant) and not _holds(replicated, old, tenant)
        # Both replicas took the move's steps on the word of both (their own answers skipped, not counted).
        for s in statuses:
            answers = s["peers"]["answers"]
            assert len(answers) == 2 and set(answers.values()) == {"ok"}, answers
    finally:
        results, _ = _move(replicated, tenant, old)
        _wait_all_settled(replicated)
        assert all(r.status == 200 for r in results), [r for r in results if r.status != 200][:3]
