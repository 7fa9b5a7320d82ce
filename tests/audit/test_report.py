"""`fairshare compliance report`: for the example tenant acme, exactly the regions, models and buckets
its config gives (computed here from the YAML, independently of the report), and its audit records;
clear answers for an unknown tenant, a period without records and a tampered log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.audit.conftest import Audited
from xds_server.audit.trail import route_regions
from xds_server.cli import main


def expected(config: Path, tenant: str) -> dict[str, object]:
    """What config/ says about `tenant`, read straight from the YAML files."""
    spec = yaml.safe_load((config / "tenants" / f"{tenant}.yaml").read_text())
    regions = {r["id"]: r for r in yaml.safe_load((config / "regions.yaml").read_text())["regions"]}
    models = yaml.safe_load((config / "models.yaml").read_text())["models"]
    allowed = spec["regions"]["allowed"]
    routed: set[str] = set()
    for name, grant in spec["models"].items():
        for version, _pct in grant["split"].items():
            mv = models[name]["versions"][version]
            where = mv.get("regions") or list(regions)
            routed |= {r for r in where if r in allowed and any(p["name"] == mv["pool"] for p in regions[r]["pools"])}
    for om in spec.get("own_models", {}).values():
        routed |= {r for r in allowed if any(p["name"] == om["pool"] for p in regions[r]["pools"])}
    return {"allowed": allowed, "routed": sorted(routed), "models": sorted(spec["models"]),
            "own": sorted(f"{tenant}:{m}" for m in spec.get("own_models", {})),
            "buckets": {r: regions[r]["model_bucket"] for r in allowed if regions[r].get("model_bucket")},
            "pii": spec.get("pii", {}), "data_class": spec.get("data_class")}


def report(audited: Audited, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["compliance", "report", "--tenant", "acme", "--config", str(audited.config),
               "--log", str(audited.log_path), *extra])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_the_report_names_exactly_acmes_regions_models_and_buckets(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    want = expected(audited.config, "acme")
    assert audited.cp.reload().ok
    audited.edit("acme", "quotas: {concurrency: 32}", "quotas: {concurrency: 16}")
    assert audited.cp.reload().ok
    audited.edit("globex", "tier:", "tier: nope\n#")  # another tenant's refusal
    assert not audited.cp.reload().ok
    audited.edit("globex", "tier: nope\n#", "tier:")  # fixed again (the report reads the config on disk)
    assert audited.cp.reload().ok is True

    rc, out = report(audited, capsys, "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["residency"]["may"]["allowed"] == want["allowed"]
    assert data["residency"]["is"]["routed_regions"] == want["routed"]
    assert sorted(c["model"] for c in data["models"]["catalog"]) == want["models"]
    assert sorted(o["model"] for o in data["models"]["own"]) == want["own"]
    assert {p["region"]: p["bucket"] for p in data["models"]["buckets"]["permitted"]} == want["buckets"]
    assert all(p["prefix"] == "tenants/acme/" for p in data["models"]["buckets"]["permitted"])
    # acme's artifacts are local files here (s3:// in a cluster): no bucket holds them.
    assert data["models"]["buckets"]["in_use"] == []
    assert data["pii"]["data_class"] == want["data_class"]
    assert set(want["pii"]["block"]) <= set(data["pii"]["effective"]["block"])  # type: ignore[index]
    assert data["pii"]["class_requires"]["block"] == ["credit_card"]  # the payment class, from policy/pii
    assert data["quotas"]["quotas"]["concurrency"] == {"effective": 16, "from": "tenant override"}
    assert data["quotas"]["quotas"]["gpus"]["from"] == "tier enterprise default"
    assert data["change_control"]["file"] == str((audited.config / "tenants" / "acme.yaml").resolve())
    # Its audit records: the first apply and the edit; not globex's refusal, nothing of other tenants.
    records = data["audit"]["records"]
    assert [r["seq"] for r in records] == [1, 2] and data["audit"]["verified"]
    assert records[1]["decision"]["result"]["quotas"]["after"]["concurrency"] == 16
    assert "globex" not in json.dumps(records)

    rc, text = report(audited, capsys)
    assert rc == 0
    for region in want["allowed"]:  # type: ignore[attr-defined]
        assert region in text
    for name in [*want["models"], *want["own"], *want["buckets"].values()]:  # type: ignore[attr-defined]
        assert name in text
    assert "seq 2" in text and "the chain verifies: 2 record(s) shown" in text


def test_unknown_tenant_and_bad_dates_get_clear_errors(audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["compliance", "report", "--tenant", "nobody", "--config", str(audited.config)]) == 2
    assert "unknown tenant 'nobody'" in capsys.readouterr().err
    rc, out = report(audited, capsys, "--since", "last tuesday")
    assert rc == 2 and "--since: expected a duration back from now (30m, 1h, 7d), a date (2026-01-31)" in out
    rc, out = report(audited, capsys, "--since", "2026-02-01", "--until", "2026-01-01")
    assert rc == 2 and "is after --until" in out


def test_a_period_without_records_says_so(audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = report(audited, capsys)
    assert rc == 2 and "no audit log at" in out and "--log" in out and "verified" not in out
    assert audited.cp.reload().ok
    rc, out = report(audited, capsys, "--since", "2000-01-01", "--until", "2000-12-31")
    assert rc == 0
    assert "no audit record touches tenant acme in the period" in out and "the log holds 1 records" in out
    # The durations `audit show` takes: the last week holds the record, a week ending a day ago does not.
    rc, out = report(audited, capsys, "--since", "7d", "--json")
    assert rc == 0 and len(json.loads(out)["audit"]["records"]) == 1
    rc, out = report(audited, capsys, "--since", "7d", "--until", "1d", "--json")
    assert rc == 0 and json.loads(out)["audit"]["records"] == []


def test_a_tampered_log_is_refused_and_the_break_named(audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    assert audited.cp.reload().ok
    audited.edit("acme", "quotas: {concurrency: 32}", "quotas: {concurrency: 16}")
    assert audited.cp.reload().ok
    text = audited.log_path.read_text().splitlines(keepends=True)
    text[1] = text[1].replace('"concurrency":16', '"concurrency":64')
    audited.log_path.write_text("".join(text))
    rc, out = report(audited, capsys, "--json")
    assert rc == 1
    data = json.loads(out)
    assert data["audit"]["records"] is None and "line 2 (seq 2): digest mismatch" in data["audit"]["break"]
    rc, out = report(audited, capsys)
    assert rc == 1 and "REFUSED: the audit log does not verify" in out and "line 2 (seq 2)" in out
    assert "concurrency\":64" not in out


def test_a_tenants_shared_result_is_found_by_the_report_and_audit_show(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    """Tenants on one effective spec share a stored result: the report still shows this tenant's own
    decision with its result inline (and the ref it was read from), nothing of the others; so does
    `audit show --tenant --json`, the record cut to the tenant."""
    hooli = (audited.config / "tenants" / "hooli.yaml").read_text()
    (audited.config / "tenants" / "hooli-2.yaml").write_text(hooli.replace("id: hooli", "id: hooli-2"))
    assert audited.cp.reload().ok
    capsys.readouterr()
    rc = main(["compliance", "report", "--tenant", "hooli-2", "--config", str(audited.config),
               "--log", str(audited.log_path), "--json"])
    assert rc == 0
    (record,) = json.loads(capsys.readouterr().out)["audit"]["records"]
    decision = record["decision"]
    assert decision["tenant"] == "hooli-2" and decision["result_ref"].startswith("blake2b-96:")
    assert decision["result"]["quotas"]["after"]["tier"] == "free"
    assert decision["result"]["routes"]["after"] == [{"region": "us-east-1", "model": "classifier", "versions": ["v2"]}]
    assert "results" not in record and "acme" not in json.dumps(record)
    rc = main(["compliance", "report", "--tenant", "hooli-2", "--config", str(audited.config),
               "--log", str(audited.log_path)])
    parts = "own_models, own_routes, pii, quotas, routes, serving, splits"
    assert rc == 0 and f"config.applied: {parts}" in capsys.readouterr().out

    assert main(["audit", "show", "--tenant", "hooli-2", "--log", str(audited.log_path), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    shown = json.loads(line)
    assert shown["decisions"] == [decision] and "results" not in shown and shown["cut_to_tenant"] == "hooli-2"


def test_an_offboarded_tenant_still_gets_its_report_from_the_trail(
        audited: Audited, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """After offboarding, the auditor still gets a report (exit 0), marked offboarded: when it was
    offboarded with the receipt's digest (checked against the receipt on disk), what it was last served
    with, and its records; also once its file is removed, and, marked but not yet offboarded, saying so."""
    import hashlib

    from xds_server.offboard.run import receipt_path

    assert audited.cp.reload().ok
    audited.edit("initech", "tier: pro", "tier: pro\noffboard: true")
    assert audited.cp.reload().ok

    def offboarded(*extra: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = main(["compliance", "report", "--tenant", "initech", "--config", str(audited.config),
                   "--log", str(audited.log_path), "--state", str(tmp_path / "state"), *extra])
        out = capsys.readouterr()
        return rc, out.out + out.err

    rc, out = offboarded()
    assert rc == 0, out
    assert "OFFBOARDED" in out and "no completed offboarding" in out and "--from-config" in out

    # What the control plane records at the receipt step (xds_server/offboard/http.py): the digest of the JWS.
    token = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
    signed = receipt_path(tmp_path / "state", "initech")
    signed.parent.mkdir(parents=True)
    signed.write_text(token + "\n")
    digest = hashlib.sha256(token.encode()).hexdigest()
    audited.cp.audit.log.append("tenant.offboarded", tenants=["initech"],  # type: ignore[union-attr]
                                steps=["mark", "routes", "receipt"], receipt_sha256=digest)

    rc, out = offboarded("--json")
    assert rc == 0, out
    data = json.loads(out)
    assert data["status"] == "offboarded" and data["tenant"] == "initech"
    o = data["offboarding"]
    assert o["tenant_file"] == "marked offboard: true" and o["receipt_sha256"] == digest
    assert o["completed_at"] == o["records"][-1]["time"] and o["records"][-1]["seq"] == 3
    assert o["receipt"] == {"file": str(signed), "sha256": digest, "matches_audit_record": True}
    # What it was served with until the mark: the record that removed it.
    last = data["last_served"]
    assert last["seq"] == 2 and route_regions(last["before"]["routes"]) == {"eu-west-1"}
    assert {"model": "embedder", "version": "v1", "percent": 50} in last["before"]["splits"]
    assert [r["kind"] for r in data["audit"]["records"]] == ["config.applied", "config.applied", "tenant.offboarded"]
    assert "acme" not in json.dumps(data)

    rc, text = offboarded()
    assert rc == 0
    assert f"deletion receipt sha256 {digest}" in text and "matches the audit record" in text
    assert "routed in eu-west-1" in text and "embedder v1 50%" in text
    assert f"seq 3 {o['completed_at']} tenant.offboarded: receipt sha256 {digest}" in text

    # The file removed by a later change: the trail still knows the tenant.
    (audited.config / "tenants" / "initech.yaml").unlink()
    assert audited.cp.reload().ok
    rc, out = offboarded("--json")
    assert rc == 0, out
    assert json.loads(out)["offboarding"]["tenant_file"] == "removed from the config"
    # A tampered receipt no longer matches what the trail recorded.
    signed.write_text(token + "x\n")
    rc, text = offboarded()
    assert rc == 0 and "DOES NOT MATCH the audit record" in text
