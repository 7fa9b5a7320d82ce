"""Moving a tenant between cells under load, through the real front tier and cell Envoys: no request
fails, its new cell serves it before the front switches, and its old cell lets go of it afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.loadgen import Target, in_background, infer_body
from tests.cells.conftest import PINS, REGION, CellsPlatform
from tests.cells.test_local_cells import served
from tests.e2e.conftest import post
from xds_server.cells.keys import snapshot_key

pytestmark = pytest.mark.e2e


def _pin(config: Path, tenant: str, cell: str) -> None:
    path = config / "tenants" / f"{tenant}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["cell"] = cell
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def _cells(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["key"]: c for c in status["cells"]}


def _wait_settled(cells: CellsPlatform, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = cells.platform.status()
        if status["last_reload"]["ok"] and not any(c["moving_in"] or c["moving_out"] for c in status["cells"]):
            return status
        time.sleep(0.1)
    raise AssertionError(f"tenants still moving after {timeout}s: {cells.platform.status()['cells']}")


def _holds(cells: CellsPlatform, cell: str, tenant: str) -> bool:
    # The cell Envoy's own view: the tenant's scope is in what it runs.
    envoy = cells.platform.envoys[snapshot_key(REGION, cell)]
    dump = envoy.admin_get("/config_dump?resource=dynamic_scoped_route_configs")
    return f'"tenant/{tenant}"' in dump


def _move(cells: CellsPlatform, tenant: str, to: str) -> tuple[list[Any], dict[str, list[str]]]:
    """Pin `tenant` to `to` under load on it; returns every result and, sampled while it moved, which
    cells held the tenant and where the status said it was going."""
    url = cells.platform.gateway_url(REGION) + "/v2/models/classifier/infer"
    target = Target(url=url, token=cells.token(tenant), body=infer_body(["I love this"]))
    seen: dict[str, list[str]] = {"moving": []}
    with in_background(target, requests=40, concurrency=4) as results:
        while len(results) < 40:
            time.sleep(0.05)
        started = cells.platform.status()["config_version"]
        _pin(cells.config_dir, tenant, to)
        deadline = time.monotonic() + 30
        while cells.platform.status()["config_version"] == started:
            assert time.monotonic() < deadline, "the pin was never applied"
            time.sleep(0.05)
        for c in cells.platform.status()["cells"]:
            if c["moving_in"] or c["moving_out"]:
                seen["moving"].append(f"{c['cell']}:{c['moving_in']}/{c['moving_out']}")
        _wait_settled(cells)
        settled_at = len(results)
        while len(results) < settled_at + 40:  # and the front keeps serving it from its new cell
            time.sleep(0.05)
    return list(results), seen


def test_a_tenant_moved_under_load_loses_no_request_and_lands_in_its_new_cell(cells: CellsPlatform) -> None:
    tenant, old = "acme", PINS["acme"]
    new = next(c for c in set(PINS.values()) if c != old)
    _wait_settled(cells)
    assert _holds(cells, old, tenant) and not _holds(cells, new, tenant)
    try:
        results, seen = _move(cells, tenant, new)
        failed = [r for r in results if r.status != 200]
        assert not failed, f"{len(failed)} of {len(results)} failed while {tenant} moved: {failed[:3]}"
        # The move went through its steps (new cell in, old cell out), not a flip.
        assert seen["moving"], "the status never showed the tenant moving"
        assert _holds(cells, new, tenant) and not _holds(cells, old, tenant)
        before = {c: served(cells.platform.envoys[snapshot_key(REGION, c)]) for c in (old, new)}
        # acme's traffic now lands on its new cell only.
        reply = post(cells.platform.gateway_url(REGION) + "/v2/models/classifier/infer", infer_body(["x"]),
                     cells.token(tenant))
        assert reply.status == 200, reply.body
        after = {c: served(cells.platform.envoys[snapshot_key(REGION, c)]) for c in (old, new)}
        assert after == {old: before[old], new: before[new] + 1}
    finally:
        # Put it back the same way (which must not fail a request either), for the other tests.
        results, _ = _move(cells, tenant, old)
        assert all(r.status == 200 for r in results), [r for r in results if r.status != 200][:3]
        assert _holds(cells, old, tenant) and not _holds(cells, new, tenant)
