"""Retention: access logs (Envoy's and the runtime's) name the tenant and the outcome, never a payload or
a query string; `fairshare logs sweep` empties each log once it is older than policy/retention's period
for the shortest data class it may hold."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import eventually, get, post
from tests.offboarding.conftest import OffboardPlatform, write_config
from xds_server.cli import main

DAY = 86400.0


def test_access_logs_name_the_tenant_and_outcome_never_the_payload(offboard_platform: OffboardPlatform) -> None:
    p = offboard_platform
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                   "data": ["refund to jane.doe@example.com, card 4111 1111 1111 1111"]}]}).encode()
    reply = post(p.url("/v2/models/classifier/infer?contact=jane.doe@example.com"), body, p.token("stayer"))
    assert reply.status == 200, reply.body
    # Personal data in the path itself, where no redaction can reach it in Envoy: a model name, a version.
    token = p.token("stayer")
    pinned = post(p.url("/v2/models/classifier/versions/jane.doe@example.com/infer"), body, token).status
    assert pinned != 200
    assert post(p.url("/v2/models/jane.doe@example.com/infer"), body, token).status == 404
    assert get(p.url("/v2/health/ready")).status == 200  # a load balancer's probe: not logged
    run = p.state_dir / "run"
    envoy_log = run / "envoy-us-east-1" / "envoy-us-east-1.log"
    runtime_log = run / "runtime-us-east-1-cpu-r1.log"

    def lines(path: Path) -> list[dict[str, object]]:
        out = []
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    # Envoy flushes its access log on its own schedule: wait for the line.
    # Other tests' requests for this tenant share the log: each of these three is looked for by what it logs.
    assert eventually(lambda: any(e.get("tenant") == "stayer" and e.get("route") == "unknown-model"
                                  for e in lines(envoy_log)), timeout=15)
    logged = {(e["status"], e["route"], e["operation"]) for e in lines(envoy_log) if e.get("tenant") == "stayer"}
    assert not [e for e in lines(envoy_log) if e.get("operation") == "ready" and not e.get("tenant")]
    assert {(200, "classifier", "infer"), (pinned, "classifier", "infer"), (404, "unknown-model", "infer")} <= logged
    runtime = [e for e in lines(runtime_log) if e.get("msg") == "request" and e.get("tenant") == "stayer"]
    # The route template, never the path; the model and version once resolved to ones the replica serves.
    assert {(200, "/v2/models/{model}/infer", "classifier", "v1"),
            (pinned, "/v2/models/{model}/versions/{version}/infer", None, None)} \
        <= {(e["status"], e["route"], e.get("model"), e.get("version")) for e in runtime}
    for path in (envoy_log, runtime_log):
        text = path.read_text()
        # The card number as sent, not its first group alone: a random request id (a UUID) may hold "4111".
        assert "jane.doe" not in text and "4111 1111" not in text and "41111111" not in text, \
            f"{path} holds request data"


def touch(path: Path, age_days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"tenant": "stayer", "status": 200}\n')
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


@pytest.mark.parametrize(("data_class", "kept_days"), [("health", 14), ("public", 90)])
def test_sweep_empties_logs_older_than_their_shortest_class(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data_class: str, kept_days: int) -> None:
    cfg = write_config(tmp_path, 18080)
    for tenant in ("leaver", "retry", "stayer"):
        path = cfg / "tenants" / f"{tenant}.yaml"
        spec = yaml.safe_load(path.read_text())
        # stayer decides: the others are public, the longest period.
        spec["data_class"] = data_class if tenant == "stayer" else "public"
        path.write_text(yaml.safe_dump(spec))
    state, now = tmp_path / "state", time.time()
    old = touch(state / "run" / "envoy-us-east-1" / "envoy-us-east-1.log", 20, now)
    new = touch(state / "run" / "runtime-us-east-1-cpu-r1.log", 1, now)
    args = ["logs", "sweep", "--config", str(cfg), "--state", str(state), "--json"]

    assert main([*args, "--dry-run"]) == 0
    planned = {Path(d["path"]).name: d for d in json.loads(capsys.readouterr().out)}
    assert planned[old.name]["keep_days"] == kept_days and not planned[old.name]["deleted"]
    assert old.stat().st_size > 0

    assert main(args) == 0
    done = {Path(d["path"]).name: d for d in json.loads(capsys.readouterr().out)}
    assert done[old.name]["deleted"] is (kept_days < 20)
    assert (old.stat().st_size == 0) is (kept_days < 20)
    assert not done[new.name]["deleted"] and new.stat().st_size > 0
