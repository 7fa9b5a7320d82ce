"""`fairshare run` with a region of cells, end to end through the real Envoys: a request to the region's port
goes through the front tier to its tenant's cell, and the answer is the model's."""

from __future__ import annotations

import pytest

from bench.loadgen import infer_body
from tests.cells.conftest import PINS, REGION, CellsPlatform
from tests.e2e.conftest import get, post
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.envoy.process import EnvoyProcess

pytestmark = pytest.mark.e2e


def served(envoy: EnvoyProcess) -> int:
    """Requests the Envoy's gateway listener answered with 2xx (its HTTP connection manager's stat prefix)."""
    stats = dict(line.split(": ", 1) for line in envoy.admin_get(
        "/stats?filter=^http\\.gateway\\.downstream_rq_2xx$").splitlines() if ": " in line)
    return int(stats.get("http.gateway.downstream_rq_2xx", "0"))


def test_a_request_through_the_front_tier_is_served_by_its_tenants_cell(cells: CellsPlatform) -> None:
    envoys = cells.platform.envoys
    url = cells.platform.gateway_url(REGION) + "/v2/models/classifier/infer"
    for tenant, cell in PINS.items():
        other = next(c for c in set(PINS.values()) if c != cell)
        before = {c: served(envoys[f"{REGION}/{c}"]) for c in (cell, other)}
        reply = post(url, infer_body(["I love this"]), cells.token(tenant))
        assert reply.status == 200, reply.body
        assert reply.body["model_name"] == "classifier"
        assert {o["name"] for o in reply.body["outputs"]} >= {"label", "score"}
        assert served(envoys[f"{REGION}/{cell}"]) == before[cell] + 1, f"{tenant}'s cell {cell} did not serve it"
        assert served(envoys[f"{REGION}/{other}"]) == before[other], f"{tenant}'s request reached cell {other}"


def test_an_unknown_tenant_is_refused_at_the_front(cells: CellsPlatform) -> None:
    envoys = cells.platform.envoys
    before = {c: served(envoys[f"{REGION}/{c}"]) for c in set(PINS.values())}
    reply = post(cells.platform.gateway_url(REGION) + "/v2/models/classifier/infer", infer_body(["x"]),
                 cells.token("nobody"))
    assert reply.status == 403, reply.body
    assert {c: served(envoys[f"{REGION}/{c}"]) for c in before} == before


def test_the_front_tier_answers_server_health_and_its_cell_the_server_metadata(cells: CellsPlatform) -> None:
    base = cells.platform.gateway_url(REGION)
    assert get(base + "/v2/health/ready").status == 200
    tenant, cell = next(iter(PINS.items()))
    before = served(cells.platform.envoys[f"{REGION}/{cell}"])
    meta = get(base + "/v2", cells.token(tenant))
    assert meta.status == 200 and meta.body["name"] == "fairshare-gateway", meta
    assert served(cells.platform.envoys[f"{REGION}/{cell}"]) == before + 1


def test_the_cells_gateways_are_the_front_tiers_endpoints(cells: CellsPlatform) -> None:
    endpoints = EndpointDirectory.load(cells.platform.endpoints_file)
    for cell in sorted(set(PINS.values())):
        (ep,) = endpoints.of(REGION, f"gateway.{cell}")
        assert f"http://{ep.host}:{ep.port}" == cells.platform.cell_url(REGION, cell)


def test_each_envoy_reports_its_cell(cells: CellsPlatform) -> None:
    nodes = cells.platform.status()["xds"]["nodes"]
    cells_of = {node_id: node.get("cell") for node_id, node in nodes.items() if node.get("connected")}
    assert cells_of == {f"gateway-{REGION}-front": "front",
                        **{f"gateway-{REGION}-{c}": c for c in sorted(set(PINS.values()))}}


def test_the_status_table_shows_each_cell_and_the_front_synced(cells: CellsPlatform) -> None:
    from xds_server.status_table import render

    status = cells.platform.status()
    text = render(status)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("gateway-")}
    for cell in ("front", *sorted(set(PINS.values()))):
        row = rows[f"gateway-{REGION}-{cell}"]
        assert row[1:3] == [REGION, cell], row
        assert "STALE" not in row and "NOT" not in row and "SYNCED" in row, row  # the front has no SRDS: "-"
    cell_lines = [line.split() for line in text.splitlines() if line.startswith(REGION) and "applied" in line]
    tenants = {parts[1]: parts[2] for parts in cell_lines}
    assert tenants == {"front": "2", "c0": "1", "c1": "1"}, text
