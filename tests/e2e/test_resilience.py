"""Restarts: Envoy restarted mid-run reconnects and serves; the control plane restarted mid-run
leaves Envoy serving its last config, and Envoy resyncs when it returns."""

from __future__ import annotations

import pytest

from bench.loadgen import Target, infer_body, run_sync
from tests.e2e.conftest import RunningPlatform, eventually, post

pytestmark = pytest.mark.e2e
US = "us-east-1"


def test_envoy_restart_reconnects_and_serves(running: RunningPlatform) -> None:
    url = running.url(US, "/v2/models/classifier/infer")
    assert post(url, infer_body(["x"]), running.token("globex")).status == 200
    running.platform.stop_envoy(US)
    running.platform.start_envoy(US)
    assert eventually(lambda: post(url, infer_body(["x"]), running.token("globex")).status == 200)


def test_control_plane_restart_keeps_serving_then_resyncs(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    # The rate-limit service lives in the control plane: while it is down, hooli's tier fails closed
    # (503, tests/ratelimit/test_outage.py). What this test is about is Envoy's routes, so no limit.
    unthrottled("hooli", exempt=True)
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token("hooli"), infer_body(["x"]))
    running.platform.stop_control_plane()
    try:
        # Envoy keeps its last config while the xDS server is gone.
        results = run_sync(target, requests=100, concurrency=4)
        assert all(r.ok for r in results)
        assert {r.model_version for r in results} == {"v2"}
        path = running.tenant_file("hooli")
        path.write_text(path.read_text().replace("{v2: 100}", "{v1: 100}"))
    finally:
        running.platform.start_control_plane()
    assert eventually(lambda: {r.model_version for r in run_sync(target, requests=10, concurrency=2)} == {"v1"})
