"""The `fairshare status` tables, on recorded status JSON (xds_server/status_table.py is pure: JSON -> text).

The recorded file is a real control plane's xDS status after its Envoy NACKed a route (captured by the
scenario of tests/controlplane/test_status_table.py), with a refused reload added beside it; the cells
form follows the cells contract (ControlPlane.status()["cells"], a `cell` on each node)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from xds_server.status_table import (
    DEFAULT_MAX_ROWS,
    NACK_CHARS,
    NOT_SENT,
    REASON_CHARS,
    STALE,
    SYNCED,
    age,
    cell_rows,
    gateway_rows,
    render,
    size,
)

RECORDED = Path(__file__).parent / "data" / "status_single_region_nack.json"
NOW = 1_800_000_000.0
TYPES = ("Cluster", "Listener", "ClusterLoadAssignment", "RouteConfiguration", "ScopedRouteConfiguration")


@pytest.fixture
def recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def _node(node_id: str, region: str, cell: str | None, version: str, *, memory: int | None = 100 * 2**20,
          current: bool = True, connected: bool = True, nack: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "node_id": node_id, "region": region, "cell": cell, "protocol": "delta", "connected": connected,
        "connected_at": NOW - 3_700, "disconnected_at": None if connected else NOW - 45,
        "applied_version": version,
        "acked": {t: {"version": version, "nonce": "1", "at": NOW - 60, "current": current} for t in TYPES},
        "last_nack": nack, "nack_count": int(nack is not None),
        "memory": None if memory is None else {"allocated": memory, "heap_size": memory * 2, "at": NOW - 2},
    }


def cells_status() -> dict[str, Any]:
    """A region with two shared cells and its front tier, as the control plane reports it."""
    nodes = {
        "gw-c0-a": _node("gw-c0-a", "eu", "c0", "c0-v9"),
        "gw-c0-b": _node("gw-c0-b", "eu", "c0", "c0-v9", memory=120 * 2**20),
        "gw-c1-a": _node("gw-c1-a", "eu", "c1", "c1-v3", current=False, memory=None),
        "front-a": _node("front-a", "eu", "front", "f-v2", memory=40 * 2**20),
    }
    regions = {
        "eu/c0": {"version": "c0-v9", "nodes_connected": 2, "nodes_applied": 2},
        "eu/c1": {"version": "c1-v4", "nodes_connected": 1, "nodes_applied": 0},
        "eu/front": {"version": "f-v2", "nodes_connected": 1, "nodes_applied": 1},
    }
    return {
        "config_version": "cfg-1", "tenants": 4_812,
        "last_reload": {"ok": True, "version": "cfg-1", "error": None, "at": NOW - 7_300},
        "cells": [
            {"region": "eu", "cell": "c0", "key": "eu/c0", "tenants": 2_406, "version": "c0-v9",
             "moving_in": 0, "moving_out": 24},
            {"region": "eu", "cell": "c1", "key": "eu/c1", "tenants": 2_406, "version": "c1-v4",
             "moving_in": 24, "moving_out": 0},
        ],
        "xds": {"regions": regions, "nodes": nodes, "at": NOW},
    }


def test_ages_and_sizes_read_like_kubectl() -> None:
    assert [age(s) for s in (0, 12.9, 59, 60, 199, 3_599, 3_600, 7_300, 86_400 * 3 + 5)] == [
        "0s", "12s", "59s", "1m", "3m", "59m", "1h", "2h", "3d"]
    assert age(None) == "-" and age(-3) == "0s"  # a clock a little ahead is not a negative age
    assert [size(n) for n in (None, 512, 6_506_176, 100 * 2**20, 1.5 * 2**30)] == [
        "-", "512 B", "6.2 MiB", "100 MiB", "1.5 GiB"]


def test_recorded_nack_shows_the_rejected_type_stale_and_the_reason(recorded: dict[str, Any]) -> None:
    text = render(recorded)
    lines = text.splitlines()
    assert lines[0].split()[:9] == ["NAME", "REGION", "CELL", "CONNECTED", "CDS", "LDS", "EDS", "RDS", "SRDS"]
    [row] = gateway_rows(recorded, recorded["xds"]["at"])
    assert row.states == (SYNCED, SYNCED, SYNCED, STALE, SYNCED)
    assert row.nack == "RDS 0s ago: missing ]: [" and row.version == "v1" and row.memory == 6_506_176
    assert "6.2 MiB" in lines[1] and "yes 1s" in lines[1]  # ages from the control plane's clock
    # The region's row: published v2, its one gateway not on it.
    assert any(line.split()[:3] == ["eu", "3", "v2"] and "0/1 applied" in line for line in lines), text
    assert lines[-1].startswith("config cfg-7f3a (3 tenants); last reload REFUSED 3m ago (still serving cfg-7f3a): "
                                "config is invalid (2 problems): - tenants/acme.yaml")


def test_cells_are_rows_with_their_tenants_moves_and_summed_memory() -> None:
    status = cells_status()
    text = render(status)
    rows = {r.cell: r for r in cell_rows(status)}
    assert set(rows) == {"c0", "c1", "front"}
    assert rows["c0"].memory == 220 * 2**20 and rows["c0"].gateways_reporting == 2
    assert rows["c1"].memory is None  # its gateway's sink has not reported: shown as "-", not 0
    cells = {line.split()[1]: line for line in text.splitlines() if line.startswith("eu ") and "applied" in line}
    assert cells["c0"].split()[2:6] == ["2,406", "c0-v9", "2/2", "applied"]
    assert "0/24" in cells["c0"] and "220 MiB (2 gateways)" in cells["c0"]
    assert "24/0" in cells["c1"] and "0/1 applied" in cells["c1"]
    # The cell whose gateways lag is listed first; the front tier has no tenant count of its own.
    assert cell_rows(status)[0].cell == "c1" and rows["front"].tenants is None
    gateways = gateway_rows(status, NOW)
    assert gateways[0].node_id == "gw-c1-a" and gateways[0].states == (STALE,) * 5
    assert {g.node_id: g.cell for g in gateways}["front-a"] == "front"
    assert "yes 1h" in text and text.endswith("config cfg-1 (4,812 tenants); last reload ok 2h ago")


def test_fields_the_json_may_lack_render_blank_not_as_errors() -> None:
    assert render({}) == "no gateways connected\n\nno snapshot published yet\n\nconfig none; no reload yet"
    status = cells_status()
    del status["cells"]
    bare = status["xds"]["nodes"]["gw-c0-a"]
    for key in ("cell", "memory", "acked", "last_nack", "connected_at"):
        bare.pop(key)
    text = render(status, now=NOW)
    [row] = [r for r in gateway_rows(status, NOW) if r.node_id == "gw-c0-a"]
    assert row.states == (NOT_SENT,) * 5 and row.memory is None and row.cell == ""
    # Without the cells list every published key is still a row, named after its key.
    assert {r.key for r in cell_rows(status)} == {"eu/c0", "eu/c1", "eu/front"} and "eu/c0" not in text


def test_without_content_flags_the_acked_version_is_compared_with_the_published_one() -> None:
    # A control plane from before per-type content flags: SYNCED means the ACKed version is the published one.
    status = cells_status()
    for node in status["xds"]["nodes"].values():
        for ack in node["acked"].values():
            del ack["current"]
    states = {r.node_id: r.states for r in gateway_rows(status, NOW)}
    assert states["gw-c0-a"] == (SYNCED,) * 5 and states["gw-c1-a"] == (STALE,) * 5


def test_a_huge_nack_and_a_huge_refusal_stay_one_short_line() -> None:
    status = cells_status()
    names = ", ".join(f"routes-tenant-{i:05d}" for i in range(6_000))
    status["xds"]["nodes"]["gw-c0-a"]["last_nack"] = {
        "type": "RouteConfiguration", "version": "c0-v10", "nonce": "9", "at": NOW - 130,
        "message": f"Invalid route configs:\n{names}: regex too large"}
    status["last_reload"] = {"ok": False, "version": "cfg-1", "at": NOW - 5,
                             "error": "config is invalid (6,003 problems):\n" + "\n".join(
                                 f"  - tenants/t{i}.yaml: gpu: over the region's guarantee" for i in range(6_003))}
    text = render(status)
    [row] = [r for r in gateway_rows(status, NOW) if r.node_id == "gw-c0-a"]
    assert len(row.nack) == NACK_CHARS and row.nack.startswith("RDS 2m ago: Invalid route configs: routes-tenant-0")
    assert row.nack.endswith("…")
    assert max(len(line) for line in text.splitlines()) < 300
    assert "REFUSED 5s ago" in text and "config is invalid (6,003 problems)" in text
    assert len(text.splitlines()[-1]) < 140 + REASON_CHARS


def test_thousands_of_gateways_show_the_worst_first_then_counts() -> None:
    status = cells_status()
    nodes = status["xds"]["nodes"]
    for i in range(3_000):
        nodes[f"gw-{i:04d}"] = _node(f"gw-{i:04d}", "eu", "c0", "c0-v9")
    nodes["gw-2999"]["connected"] = False
    nodes["gw-2999"]["disconnected_at"] = NOW - 45
    text = render(status)
    lines = text.splitlines()
    assert len(lines) < DEFAULT_MAX_ROWS + 20
    assert lines[1].startswith("gw-c1-a ") and lines[2].startswith("gw-2999 ") and "no 45s" in lines[2]
    [more] = [line for line in lines if line.startswith("... and ")]
    assert more == "... and 2,954 more gateways (2,954 SYNCED; --all shows every one, --json everything)"
    everything = render(status, max_rows=None)
    assert sum(line.startswith("gw-") for line in everything.splitlines()) == 3_003
    assert "... and" not in everything


def test_a_disconnected_gateway_keeps_its_last_state() -> None:
    status = copy.deepcopy(cells_status())
    status["xds"]["nodes"]["gw-c0-b"].update(connected=False, disconnected_at=NOW - 45)
    [row] = [r for r in gateway_rows(status, NOW) if r.node_id == "gw-c0-b"]
    assert not row.connected and row.states == (SYNCED,) * 5 and row.rank == 2
    # Memory per cell counts only the gateways still connected.
    assert {r.cell: r.memory for r in cell_rows(status)}["c0"] == 100 * 2**20


def test_peers_that_did_not_answer_are_named_with_why() -> None:
    status = cells_status()
    assert "peers" not in render(status)  # one replica: no line
    status["peers"] = {"replica": "r0", "addresses": ["cp-peers.fs.svc:18001"], "answers": {}}
    assert render(status).endswith("peers cp-peers.fs.svc:18001: not asked yet (no move pending)")
    status["peers"]["answers"] = {"10.0.0.5:18001": "ok", "10.0.0.6:18001": "ok"}
    assert render(status).endswith(": 2 answering")
    status["peers"]["answers"]["10.0.0.6:18001"] = "ClientConnectorError: " + "x" * 5_000
    last = render(status).splitlines()[-1]
    assert last.startswith("peers cp-peers.fs.svc:18001: moves wait on 10.0.0.6:18001 (ClientConnectorError: xx")
    assert len(last) < 400
