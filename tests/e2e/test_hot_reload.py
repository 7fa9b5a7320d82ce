"""Editing the config while the platform runs: valid edits go live with no failed request, invalid
edits are rejected with the reason and traffic keeps flowing on the last good config."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from bench.loadgen import Result, Target, infer_body, run_sync
from tests.e2e.conftest import RunningPlatform, eventually, post

pytestmark = pytest.mark.e2e
US = "us-east-1"


def status(running: RunningPlatform) -> dict[str, Any]:
    return running.platform.status()


def versions_seen(running: RunningPlatform, tenant: str, n: int = 20) -> set[str | None]:
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token(tenant), infer_body(["x"]))
    return {r.model_version for r in run_sync(target, requests=n, concurrency=4)}


def test_split_change_goes_live_without_failed_requests(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    unthrottled("globex")  # load as fast as the pool answers, past globex's rate limit
    assert versions_seen(running, "globex", 60) == {"v1", "v2"}
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token("globex"), infer_body(["x"]))
    results: list[Result] = []
    load = threading.Thread(target=lambda: results.extend(run_sync(target, duration_s=6, concurrency=4)))
    load.start()
    path = running.tenant_file("globex")
    path.write_text(path.read_text().replace("{v1: 80, v2: 20}", "{v1: 0, v2: 100}"))
    try:
        assert eventually(lambda: versions_seen(running, "globex") == {"v2"})
    finally:
        load.join()
    assert results and all(r.ok for r in results), Counter((r.status, r.error) for r in results if not r.ok)
    # Once the new split is live, it stays live: the tail of the run saw v2 only.
    tail = sorted(results, key=lambda r: r.started_s)[-50:]
    assert {r.model_version for r in tail} == {"v2"}


def test_invalid_edit_is_rejected_and_traffic_keeps_flowing(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    unthrottled("globex")
    serving = status(running)["config_version"]
    path = running.tenant_file("globex")
    path.write_text(path.read_text().replace("{v1: 80, v2: 20}", "{v1: 80, v2: 30}"))
    assert eventually(lambda: status(running)["last_reload"]["ok"] is False)
    report = status(running)
    assert "globex.yaml: models.classifier.split: weights must add up to 100, got 110" in report["last_reload"]["error"]
    assert report["config_version"] == serving
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token("globex"), infer_body(["x"]))
    results = run_sync(target, requests=200, concurrency=4)
    assert all(r.ok for r in results)
    assert {r.model_version for r in results} == {"v1", "v2"}  # the last good split, still 80/20


def test_new_tenant_is_onboarded_live(running: RunningPlatform, restore_config) -> None:  # type: ignore[no-untyped-def]
    url = running.url(US, "/v2/models/classifier/infer")
    assert post(url, infer_body(["x"]), running.token("newco")).status == 403
    (running.config_dir / "tenants" / "newco.yaml").write_text(
        "id: newco\ntier: free\nregions: {home: us-east-1, allowed: [us-east-1]}\n"
        "models:\n  classifier: {split: {v1: 100}}\n"
    )
    assert eventually(lambda: post(url, infer_body(["x"]), running.token("newco")).status == 200)
