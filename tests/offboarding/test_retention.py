"""Retention: access logs (Envoy's and the runtime's) name the tenant and the outcome, never a payload or
a query string; `fairshare logs sweep` removes each line older than policy/retention's period for the
shortest data class its log may hold, a removed tenant's class included while its lines may be there."""

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
from xds_server.retention import sweep

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


def set_classes(cfg: Path, classes: dict[str, str]) -> None:
    for tenant, data_class in classes.items():
        path = cfg / "tenants" / f"{tenant}.yaml"
        spec = yaml.safe_load(path.read_text())
        spec["data_class"] = data_class
        path.write_text(yaml.safe_dump(spec))


def stamp(at: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(at))


def sweep_json(capsys: pytest.CaptureFixture[str], cfg: Path, state: Path, *extra: str) -> dict[str, dict[str, object]]:
    capsys.readouterr()
    assert main(["logs", "sweep", "--config", str(cfg), "--state", str(state), "--json", *extra]) == 0
    return {Path(str(d["path"])).name: d for d in json.loads(capsys.readouterr().out)}


def test_a_log_still_written_loses_its_lines_older_than_the_period(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log written every day never has an old last write: its old lines are removed, whatever their
    format (the runtime's JSON, Envoy's access log and its own lines, the control plane's), and a line
    without a time (a traceback's) goes with the line before it. A process appending to it meanwhile
    keeps appending to the same file."""
    cfg = write_config(tmp_path, 18080)
    set_classes(cfg, {"leaver": "public", "retry": "public", "stayer": "health"})  # 14 days
    state, now = tmp_path / "state", time.time()
    old, recent = now - 20 * DAY, now - 2 * DAY
    runtime = state / "run" / "runtime-us-east-1-cpu-r1.log"
    envoy = state / "run" / "envoy-us-east-1" / "envoy-us-east-1.log"
    control = state / "run" / "controlplane.log"
    for path in (runtime, envoy, control):
        path.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_text(f'{{"ts": "{stamp(old, "%Y-%m-%dT%H:%M:%S.000Z")}", "msg": "request", "tenant": "stayer"}}\n'
                       '  a continuation line without a time\n'
                       f'{{"ts": "{stamp(recent, "%Y-%m-%dT%H:%M:%S.000Z")}", "msg": "request", "tenant": "stayer"}}\n')
    envoy.write_text(f"[{stamp(old, '%Y-%m-%d %H:%M:%S')}.123][1][info][main] starting\n"
                     f'{{"time":"{stamp(old, "%Y-%m-%dT%H:%M:%S")}.5Z","tenant":"stayer","status":"200"}}\n'
                     f'{{"time":"{stamp(recent, "%Y-%m-%dT%H:%M:%S")}.5Z","tenant":"stayer","status":"200"}}\n')
    control.write_text(f"{stamp(old, '%Y-%m-%d %H:%M:%S')},001 INFO fairshare: reload\n"
                       f"{stamp(old + DAY, '%Y-%m-%d %H:%M:%S')},001 INFO fairshare: reload\n")
    appender = runtime.open("a")  # the runtime's own handle, O_APPEND like the launcher's

    planned = sweep_json(capsys, cfg, state, "--dry-run")
    assert (planned[runtime.name]["dropped_lines"], planned[runtime.name]["kept_lines"]) == (2, 1)
    assert not planned[runtime.name]["pruned"] and len(runtime.read_text().splitlines()) == 3

    done = sweep_json(capsys, cfg, state)
    assert done[runtime.name]["keep_days"] == 14 and done[runtime.name]["pruned"]
    assert runtime.read_text().splitlines() == [
        f'{{"ts": "{stamp(recent, "%Y-%m-%dT%H:%M:%S.000Z")}", "msg": "request", "tenant": "stayer"}}']
    assert envoy.read_text().splitlines() == [
        f'{{"time":"{stamp(recent, "%Y-%m-%dT%H:%M:%S")}.5Z","tenant":"stayer","status":"200"}}']
    assert control.read_text() == "" and done[control.name]["deleted"]
    appender.write('{"msg": "after the sweep"}\n')
    appender.close()
    assert runtime.read_text().splitlines()[-1] == '{"msg": "after the sweep"}'
    assert len(runtime.read_text().splitlines()) == 2  # no hole of old bytes before it


def test_a_removed_tenants_class_holds_the_logs_until_its_lines_are_past_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The tenant file is removed after offboarding, yet the logs still hold its lines: the audit trail
    remembers its class (health: 14 days) until its period has passed since its removal. A config some
    policy refuses (here a tier that does not exist) still has its logs swept."""
    from xds_server.audit import AuditLog
    from xds_server.audit.trail import ControlPlaneAudit
    from xds_server.controlplane.service import ControlPlane
    from xds_server.policy.backends import DEFAULT_POLICY_DIR
    from xds_server.xds.store import SnapshotStore

    monkeypatch.setenv("FAIRSHARE_POLICY_DIR", str(DEFAULT_POLICY_DIR))
    cfg = write_config(tmp_path, 18080)
    set_classes(cfg, {"leaver": "health", "retry": "public", "stayer": "public"})
    state = tmp_path / "state"
    cp = ControlPlane(cfg, None, '{"keys": []}', SnapshotStore())
    cp.audit = ControlPlaneAudit.of(cp, AuditLog(state / "audit" / "audit.jsonl"))
    assert cp.reload().ok
    (cfg / "tenants" / "leaver.yaml").unlink()
    assert cp.reload().ok
    assert cp.audit.log.seq == 2

    now = time.time()
    log = state / "run" / "runtime-us-east-1-cpu-r1.log"
    log.parent.mkdir(parents=True)

    def write() -> None:
        log.write_text(f'{{"ts": "{stamp(now - 20 * DAY, "%Y-%m-%dT%H:%M:%S.000Z")}", "tenant": "leaver"}}\n'
                       f'{{"ts": "{stamp(now - DAY, "%Y-%m-%dT%H:%M:%S.000Z")}", "tenant": "stayer"}}\n')

    write()
    assert sweep_json(capsys, cfg, state)[log.name]["keep_days"] == 14
    assert "leaver" not in log.read_text()
    # Its period since the removal has passed: every line of it is older than that, the public 90 apply.
    write()
    (later,) = sweep(state / "run", cfg, now=now + 15 * DAY, audit_log=state / "audit" / "audit.jsonl")
    assert later.keep_days == 90

    # An unrelated refusal of the config does not stop retention.
    stayer = cfg / "tenants" / "stayer.yaml"
    stayer.write_text(stayer.read_text().replace("tier:", "tier: platinum\nx-old-tier:"))
    assert not cp.reload().ok
    assert sweep_json(capsys, cfg, state)[log.name]["keep_days"] == 14
