"""The control plane's audit records, through the real reload path: an applied change records the
tenants it touched with what changed in their effective spec (before/after), a refusal its reasons;
records carry no secret; the chain verifies."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from tests.audit.conftest import Audited
from xds_server.audit import AuditLog, verify
from xds_server.audit.cli import open_from_args
from xds_server.audit.log import digest_of
from xds_server.audit.trail import route_regions
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_for_config
from xds_server.cli import _parser

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_an_applied_change_records_the_tenants_and_decisions_it_changed(audited: Audited) -> None:
    assert audited.cp.reload().ok
    first = audited.records()[0]
    assert first["kind"] == "config.applied" and first["seq"] == 1 and first["prev"] is None
    assert first["added"] == ["acme", "globex", "hooli", "initech"] == first["tenants"]
    assert first["source"] == "local" and "revision" in first and "author" in first
    assert RFC3339_UTC.match(str(first["time"]))

    audited.edit("acme", "quotas: {concurrency: 32}", "quotas: {concurrency: 16}")
    assert audited.cp.reload().ok
    record = audited.records()[-1]
    assert record["kind"] == "config.applied" and record["seq"] == 2
    assert record["prev"] == first["digest"] and record["digest"] == digest_of(record)
    assert record["tenants"] == ["acme"] and record["added"] == [] and record["removed"] == []
    assert record["previous_version"] == first["config_version"] != record["config_version"]
    (decision,) = record["decisions"]
    # OPA's decision-log shape: an id, the path queried, the input's digest (not the input), the result.
    assert set(decision) == {"decision_id", "path", "tenant", "input_digest", "result", "timestamp"}
    assert decision["path"] == "fairshare/tenant/result" and decision["input_digest"].startswith("blake2b-96:")
    # Only what changed, before and after, and the policy that decided it.
    assert set(decision["result"]) == {"quotas"}
    quotas = decision["result"]["quotas"]
    assert record["decided_by"]["quotas"] == "fairshare/quota"
    assert (quotas["before"]["concurrency"], quotas["after"]["concurrency"]) == (32, 16)
    assert quotas["after"]["tier"] == "enterprise"

    # A routes and PII change of one tenant: both parts, nothing about the others.
    audited.edit("acme", "regions: {home: us-east-1, allowed: [us-east-1, eu-west-1]}",
                 "regions: {home: us-east-1, allowed: [us-east-1]}")
    audited.edit("acme", "block: [credit_card]", "block: [credit_card, iban]")
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    result = decision["result"]
    assert set(result) == {"routes", "own_routes", "pii"}
    assert route_regions(result["routes"]["before"]) == {"us-east-1", "eu-west-1"}
    assert route_regions(result["routes"]["after"]) == {"us-east-1"}
    assert "iban" in result["pii"]["after"]["block"] and "iban" not in result["pii"]["before"]["block"]
    assert audited.records()[-1]["decided_by"]["pii"] == "fairshare/pii"

    # Removing a tenant is recorded as such; a reload that changes nothing adds no record.
    (audited.config / "tenants" / "hooli.yaml").unlink()
    assert audited.cp.reload().ok
    removed = audited.records()[-1]
    assert removed["removed"] == ["hooli"] and removed["tenants"] == ["hooli"]
    assert removed["decisions"][0]["result"]["quotas"]["after"] is None
    count = len(audited.records())
    assert audited.cp.reload().ok
    assert len(audited.records()) == count
    assert verify(audited.log_path).ok


def test_a_refusal_records_its_reasons(audited: Audited) -> None:
    assert audited.cp.reload().ok
    audited.edit("acme", "tier: enterprise", "tier: platinum")
    outcome = audited.cp.reload()
    assert not outcome.ok
    record = audited.records()[-1]
    assert record["kind"] == "config.refused" and record["seq"] == 2
    assert record["serving_version"] == audited.records()[0]["config_version"]
    assert record["tenants"] == ["acme"]
    (reason,) = record["reasons"]
    assert "acme.yaml" in reason and "unknown tier 'platinum'" in reason
    assert record["summary"].startswith("config is invalid")
    # A policy's refusal too: its reason names the policy and the rule.
    audited.edit("acme", "tier: platinum", "tier: enterprise")
    audited.edit("acme", "data_class: payment", "data_class: secret-stuff")
    assert not audited.cp.reload().ok
    (reason,) = audited.records()[-1]["reasons"]
    assert "unknown data class" in reason and "unknown-data-class" in reason
    assert verify(audited.log_path).ok


def test_records_carry_no_token_key_or_request_data(audited: Audited, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A tenant with PII rules and a live token: neither the token nor the signing key reaches the log,
    even when a refused file quotes the token back (here: as a field name, which the reason repeats);
    nor does it reach the control plane's own log or its status page."""
    assert audited.cp.reload().ok
    key = SigningKey.load_or_create(tmp_path / "state")
    assert audited.cp.config is not None
    token = issue_for_config(audited.cp.config, key, "acme")
    path = audited.config / "tenants" / "acme.yaml"
    path.write_text(path.read_text() + f"{token}: 1\n")
    with caplog.at_level(logging.ERROR, logger="fairshare.controlplane"):
        outcome = audited.cp.reload()
    assert not outcome.ok and outcome.error is not None and "[redacted]" in outcome.error
    assert token not in outcome.error and token not in caplog.text and "[redacted]" in caplog.text
    page = json.dumps(audited.cp.status())
    assert token not in page and "[redacted]" in page
    (listed,) = [p for p in audited.cp.status()["last_reload"]["problems"] if "unknown field" in p["message"]]
    assert "[redacted]" in listed["field"] + listed["message"]
    text = audited.log_path.read_text()
    assert "unknown field" in text and "[redacted]" in text
    assert token not in text and token.split(".")[1] not in text
    assert "PRIVATE KEY" not in text
    for private in (tmp_path / "state").rglob("*"):
        if private.is_file() and "audit" not in private.parts:
            assert private.read_text(errors="replace").strip() not in text
    # The PII rules are there as rules (entity names), never as values.
    assert '"redact":["email"' in text
    assert "@" not in text.replace("maintainers@", "")  # no e-mail address but a git author's


def test_the_api_refuses_secret_fields_and_values(tmp_path: Path) -> None:
    import pytest

    from xds_server.audit import AuditError

    log = AuditLog(tmp_path / "a.jsonl")
    for fields in ({"token": "x"}, {"detail": {"api_key": "x"}}, {"steps": [{"payload": "x"}]},
                   {"note": "eyJhbGciOiJFUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2lnbmF0dXJl"}, {"seq": 3}):
        with pytest.raises(AuditError):
            log.append("offboard", **fields)
    with pytest.raises(AuditError, match="dotted lowercase"):
        log.append("Offboard!")
    record = log.append("offboard", tenants=["acme"], removed={"routes": 3})
    assert record["seq"] == 1 and log.seq == 1
    assert AuditLog(tmp_path / "a.jsonl").append("offboard.receipt", tenants=["acme"])["prev"] == record["digest"]


def test_serve_keeps_an_audit_log_under_the_state_dir_by_default(tmp_path: Path) -> None:
    args = _parser().parse_args(["serve", "--state", str(tmp_path)])
    log = open_from_args(args)
    assert log is not None and log.path == tmp_path / "audit" / "audit.jsonl"
    assert open_from_args(_parser().parse_args(["serve", "--no-audit"])) is None
    custom = _parser().parse_args(["serve", "--audit-log", str(tmp_path / "x.jsonl"), "--audit-max-mb", "1"])
    log = open_from_args(custom)
    assert log is not None and log.path == tmp_path / "x.jsonl" and log.max_bytes == 2**20


def test_tenants_with_one_effective_spec_share_one_stored_result(audited: Audited) -> None:
    """A fleet on tier defaults (here three copies of hooli): each distinct result is stored once in the
    record and named by digest from each tenant's decision, and every tenant's effective quotas, routes
    and PII rules are still read back from the record, equal to what the platform enforces."""
    from xds_server.audit.trail import decision_of, result_digest

    hooli = (audited.config / "tenants" / "hooli.yaml").read_text()
    fleet = ["hooli", "hooli-2", "hooli-3"]
    for tid in fleet[1:]:
        (audited.config / "tenants" / f"{tid}.yaml").write_text(hooli.replace("id: hooli", f"id: {tid}"))
    assert audited.cp.reload().ok
    record = audited.records()[0]
    assert record["tenants"] == sorted(["acme", "globex", "initech", *fleet])
    by_tenant = {d["tenant"]: d for d in record["decisions"]}
    (ref,) = {by_tenant[t]["result_ref"] for t in fleet}
    assert all("result" not in by_tenant[t] for t in fleet)
    assert list(record["results"]) == [ref] and result_digest(record["results"][ref]) == ref
    # Tenants with a spec of their own keep their result inline (OPA's decision shape).
    assert all("result" in by_tenant[t] and "result_ref" not in by_tenant[t] for t in ("acme", "globex", "initech"))
    assert audited.cp.config is not None
    for tid in record["tenants"]:
        decision = decision_of(record, tid)
        assert decision is not None and decision["decision_id"] == by_tenant[tid]["decision_id"]
        enforced = audited.cp.config.tenants[tid]
        result = decision["result"]
        assert result["quotas"]["before"] is None
        assert result["quotas"]["after"] == {"tier": enforced.spec.tier, "weight": enforced.weight,
                                             **enforced.quotas.model_dump()}
        assert result["routes"]["after"] == [{"region": r, "model": m, "versions": list(v)}
                                             for r, ms in sorted(enforced.routes.items())
                                             for m, v in sorted(ms.items())]
        assert result["own_routes"]["after"] == enforced.own_routes
        assert result["pii"]["after"] == {"data_class": enforced.spec.data_class,
                                          **enforced.pii.model_dump(mode="json")}
    assert decision_of(record, "nobody") is None

    # A tier default changed: the fleet's before/after results are equal (different objects) and are
    # stored once again; the chain holds.
    tiers = audited.config / "tiers.yaml"
    tiers.write_text(tiers.read_text().replace("quotas: {concurrency: 4,", "quotas: {concurrency: 6,"))
    assert audited.cp.reload().ok
    record = audited.records()[-1]
    assert record["tenants"] == fleet and len(record["results"]) == 1
    for tid in fleet:
        quotas = decision_of(record, tid)["result"]["quotas"]  # type: ignore[index]
        assert (quotas["before"]["concurrency"], quotas["after"]["concurrency"]) == (4, 6)
    assert verify(audited.log_path).ok


def local(audited: Audited, relative: str) -> str:
    """Where the config load says a local artifact under the config copy's models/ is."""
    import os

    return os.path.abspath(audited.config / "models" / relative)


def _artifact(audited: Audited, relative: str, data: bytes) -> str:
    """An own model's artifact written into the config copy; its sha256 (the config load checks it)."""
    import hashlib

    path = audited.config / "models" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_split_and_artifact_changes_record_the_rows_that_changed(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    """A new own-model version with a 70/30 split, a new artifact digest for an own version, a catalog
    canary step: each is a record whose result says before and after, only the rows that changed
    (model, version, percent, and for own versions the sha256); the report shows them."""
    from xds_server.cli import main

    assert audited.cp.reload().ok
    first = {d["tenant"]: d["result"] for d in audited.records()[0]["decisions"] if "result" in d}
    assert {"model": "embedder", "version": "v1", "percent": 90} in first["acme"]["splits"]["after"]
    assert [r["version"] for r in first["acme"]["own_models"]["after"]] == ["1", "2"]

    one = "908d8d5eac605cb819f2ace28588028ef2bfe9c0d7393c1064c388896f61b1fd"
    intent = (audited.config / "models" / "globex" / "intent" / "1" / "model.onnx").read_bytes()
    two = _artifact(audited, "globex/intent/2/model.onnx", intent + b"\0")
    audited.edit("globex", f'"1": {{artifact: ../models/globex/intent/1/model.onnx, sha256: {one}}}',
                 f'"1": {{artifact: ../models/globex/intent/1/model.onnx, sha256: {one}}}\n'
                 f'      "2": {{artifact: ../models/globex/intent/2/model.onnx, sha256: {two}}}\n'
                 '    split: {"1": 70, "2": 30}')
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    assert decision["tenant"] == "globex" and set(decision["result"]) == {"own_models"}
    head = {"format": "head", "base": "embedder/v1", "pool": "gpu-small"}
    assert decision["result"]["own_models"] == {
        "before": [{"model": "intent", "version": "1", "percent": 100, "sha256": one,
                    "artifact": local(audited, "globex/intent/1/model.onnx"), **head}],
        "after": [{"model": "intent", "version": "1", "percent": 70, "sha256": one,
                   "artifact": local(audited, "globex/intent/1/model.onnx"), **head},
                  {"model": "intent", "version": "2", "percent": 30, "sha256": two,
                   "artifact": local(audited, "globex/intent/2/model.onnx"), **head}]}
    assert audited.records()[-1]["decided_by"]["own_models"] == "fairshare/models"

    old = "77be7c925f2d4c4654603289b8ae241a9172c612ad40a3fc7a43ca67cfa41dc2"
    router = audited.config / "models" / "acme" / "ticket-router" / "2" / "model.onnx"
    new = _artifact(audited, "acme/ticket-router/2/model.onnx", router.read_bytes() + b"\0")
    audited.edit("acme", old, new)
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    # Version 1 did not change: it is not in the record.
    router_row = {"model": "ticket-router", "version": "2", "percent": 10,
                  "artifact": local(audited, "acme/ticket-router/2/model.onnx"), "format": "onnx", "base": None,
                  "pool": "cpu-general"}
    assert decision["result"] == {"own_models": {"before": [{**router_row, "sha256": old}],
                                                 "after": [{**router_row, "sha256": new}]}}

    audited.edit("acme", "embedder: {split: {v1: 90, v2: 10}}", "embedder: {split: {v1: 50, v2: 50}}")
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    assert decision["result"] == {"splits": {
        "before": [{"model": "embedder", "version": "v1", "percent": 90},
                   {"model": "embedder", "version": "v2", "percent": 10}],
        "after": [{"model": "embedder", "version": "v1", "percent": 50},
                  {"model": "embedder", "version": "v2", "percent": 50}]}}
    assert audited.records()[-1]["decided_by"]["splits"] == "fairshare/residency"
    assert verify(audited.log_path).ok

    capsys.readouterr()
    assert main(["compliance", "report", "--tenant", "acme", "--config", str(audited.config),
                 "--log", str(audited.log_path)]) == 0
    text = capsys.readouterr().out
    assert "config.applied: -" not in text
    where = f"onnx on pool cpu-general, from {local(audited, 'acme/ticket-router/2/model.onnx')}"
    assert (f"own_models: ticket-router 2 10% (sha256 {old[:12]}, {where}) -> "
            f"ticket-router 2 10% (sha256 {new[:12]}, {where})") in text
    assert "splits: embedder v1 90%, embedder v2 10% -> embedder v1 50%, embedder v2 50%" in text


def test_where_an_own_model_runs_and_is_read_from_and_a_data_class_are_recorded(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    """Changes that alter no digest and no percent, yet are what an auditor asks about: the same bytes read
    from another place, a model moved to another pool, the tenant's data declared of another class."""
    import shutil

    from xds_server.cli import main

    assert audited.cp.reload().ok
    models = audited.config / "models" / "acme" / "ticket-router"
    shutil.copytree(models / "1", models / "1-moved")
    audited.edit("acme", "../models/acme/ticket-router/1/model.onnx", "../models/acme/ticket-router/1-moved/model.onnx")
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    rows = decision["result"]["own_models"]
    # A local artifact as the runtime reads it (absolute); an s3:// one as written.
    assert [(r["version"], r["artifact"]) for r in rows["before"]] == [
        ("1", local(audited, "acme/ticket-router/1/model.onnx"))]
    assert [(r["version"], r["artifact"]) for r in rows["after"]] == [
        ("1", local(audited, "acme/ticket-router/1-moved/model.onnx"))]
    assert rows["before"][0]["sha256"] == rows["after"][0]["sha256"]

    audited.edit("acme", "pool: cpu-general", "pool: gpu-small")
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    rows = decision["result"]["own_models"]
    assert {(r["version"], r["pool"]) for r in rows["before"]} == {("1", "cpu-general"), ("2", "cpu-general")}
    assert {(r["version"], r["pool"]) for r in rows["after"]} == {("1", "gpu-small"), ("2", "gpu-small")}

    audited.edit("hooli", "data_class: public", "data_class: internal")
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    pii = decision["result"]["pii"]
    assert (pii["before"]["data_class"], pii["after"]["data_class"]) == ("public", "internal")
    assert verify(audited.log_path).ok

    capsys.readouterr()
    assert main(["compliance", "report", "--tenant", "acme", "--config", str(audited.config),
                 "--log", str(audited.log_path)]) == 0
    moved = local(audited, "acme/ticket-router/1-moved/model.onnx")
    assert f"onnx on pool gpu-small, from {moved}" in capsys.readouterr().out


def test_a_cell_pin_or_a_rate_limit_mode_is_recorded_before_and_after(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    """Set in the tenant's file and decided by no policy, yet how it is served: putting its rate limits in
    shadow (they count, refuse nothing) is a change an auditor asks about."""
    from xds_server.cli import main

    assert audited.cp.reload().ok
    path = audited.config / "tenants" / "acme.yaml"
    path.write_text(path.read_text() + "rate_limit: {shadow: true}\n")
    assert audited.cp.reload().ok
    (decision,) = audited.records()[-1]["decisions"]
    assert decision["tenant"] == "acme"
    assert decision["result"] == {"serving": {"before": {"cell": None, "shadow": False, "exempt": False},
                                              "after": {"cell": None, "shadow": True, "exempt": False}}}
    assert verify(audited.log_path).ok
    capsys.readouterr()
    assert main(["compliance", "report", "--tenant", "acme", "--config", str(audited.config),
                 "--log", str(audited.log_path)]) == 0
    assert "serving: cell -, exempt False, shadow False -> cell -, exempt False, shadow True" in capsys.readouterr().out



def test_a_catalog_model_named_like_request_data_is_recorded(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    """A catalog model named `prompt` (a name the writer refuses as a field): granting it is still
    recorded, and verified. Before, the routes part keyed regions by model name, so the record was refused
    and the change served with no record of it."""
    from xds_server.cli import main

    assert audited.cp.reload().ok
    models = audited.config / "models.yaml"
    models.write_text(models.read_text() + "  prompt:\n    kind: classifier\n"
                      "    versions:\n      v1: {pool: cpu-general, loader: lexicon}\n")
    audited.edit("acme", "classifier: {split: {v1: 100}}",
                 "classifier: {split: {v1: 100}}\n  prompt: {split: {v1: 100}}")
    audited.edit("acme", "block: [credit_card]", "block: [credit_card, iban]")
    count = len(audited.records())
    assert audited.cp.reload().ok
    records = audited.records()
    assert len(records) == count + 1 and records[-1]["kind"] == "config.applied"
    (decision,) = records[-1]["decisions"]
    assert decision["tenant"] == "acme"
    after = decision["result"]["routes"]["after"]
    assert {"region": "us-east-1", "model": "prompt", "versions": ["v1"]} in after
    assert verify(audited.log_path).ok

    # audit show says what changed, before -> after, for each part: routes and PII rules as well.
    capsys.readouterr()
    assert main(["audit", "show", "--tenant", "acme", "--log", str(audited.log_path)]) == 0
    out = capsys.readouterr().out
    assert "pii: block [credit_card], data_class payment" in out and "block [credit_card, iban]" in out
    (routes,) = [line for line in out.splitlines() if line.strip().startswith("routes:") and "prompt" in line]
    assert "prompt v1" in routes.split("->")[1] and "prompt" not in routes.split("->")[0]


def test_a_record_that_cannot_be_written_is_shown_in_status(
        audited: Audited, monkeypatch: pytest.MonkeyPatch) -> None:
    """The change is served anyway (a full disk must not stop the platform), so the loss is in /status
    and `fairshare status`, not only in a log line; status also gives the trail's head, where a shipped
    copy must end."""
    from xds_server.status_table import render

    assert audited.cp.reload().ok
    (first,) = audited.records()
    assert audited.cp.status()["audit"] == {"log": str(audited.log_path), "seq": 1, "head": first["digest"],
                                            "unrecorded": 0, "last_error": None}
    assert f"audit trail {audited.log_path}: seq 1, head {first['digest']}" in render(audited.cp.status())

    def full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AuditLog, "append", full)
    audited.edit("acme", "quotas: {concurrency: 32}", "quotas: {concurrency: 16}")
    assert audited.cp.reload().ok
    audit = audited.cp.status()["audit"]
    assert audit["seq"] == 1 and audit["unrecorded"] == 1
    assert audit["last_error"]["kind"] == "config.applied" and "No space left" in audit["last_error"]["error"]
    assert "1 record(s) NOT WRITTEN" in render(audited.cp.status())
