"""`fairshare audit show`: a readable line per record by default (JSON lines behind --json); --tenant
cuts each record to that tenant's part, marked as cut; a tenant named by no record and absent from the
config is an error; --since takes a duration as well as a date or time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.audit.conftest import Audited
from xds_server.audit import AuditLog, verify
from xds_server.audit import log as audit_log
from xds_server.audit.log import digest_of
from xds_server.audit.trail import decision_of
from xds_server.cli import main

OTHERS = ("acme", "globex", "initech", "hooli-2")


def show(audited: Audited, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["audit", "show", "--log", str(audited.log_path), *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def copy_tenant(audited: Audited, source: str, new: str) -> None:
    text = (audited.config / "tenants" / f"{source}.yaml").read_text()
    (audited.config / "tenants" / f"{new}.yaml").write_text(text.replace(f"id: {source}", f"id: {new}"))


def refuse_two_tenants(audited: Audited) -> None:
    """A refused change whose reasons name acme's file and hooli's."""
    audited.edit("acme", "tier: enterprise", "tier: platinum")
    audited.edit("hooli", "tier: free", "tier: gold")
    assert not audited.cp.reload().ok
    audited.edit("acme", "tier: platinum", "tier: enterprise")
    audited.edit("hooli", "tier: gold", "tier: free")


def test_one_tenants_json_holds_its_part_only_and_says_it_is_cut(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    # hooli and hooli-2 share one stored result on the first load; acme's edit names acme alone; the
    # refusal names acme's file and hooli's.
    copy_tenant(audited, "hooli", "hooli-2")
    assert audited.cp.reload().ok
    audited.edit("acme", "quotas: {concurrency: 32}", "quotas: {concurrency: 16}")
    assert audited.cp.reload().ok
    refuse_two_tenants(audited)
    full = audited.records()
    assert "results" in full[0] and len(full[0]["decisions"]) == 5

    rc, out, _ = show(audited, capsys, "--tenant", "hooli", "--json")
    assert rc == 0
    first, refused = [json.loads(line) for line in out.splitlines()]
    for cut, record in ((first, full[0]), (refused, full[2])):
        assert cut["cut_to_tenant"] == "hooli" and cut["seq"] == record["seq"]
        # The full record's digest, for finding it in the log; the cut itself does not hash to it.
        assert cut["digest"] == record["digest"] == digest_of(record) != digest_of(cut)
        assert cut["tenants"] == ["hooli"]
        text = json.dumps(cut)
        assert not [other for other in OTHERS if other in text], text
    (decision,) = first["decisions"]
    assert decision == decision_of(full[0], "hooli") and decision["result"]["quotas"]["after"]["tier"] == "free"
    assert "results" not in first and first["added"] == ["hooli"] and first["removed"] == []
    (reason,) = refused["reasons"]
    assert "hooli.yaml" in reason and "gold" in reason

    # Without --tenant the records are the chained ones, verbatim.
    rc, out, _ = show(audited, capsys, "--json")
    assert rc == 0 and [json.loads(line) for line in out.splitlines()] == full
    assert verify(audited.log_path).ok

    # The help says a cut record is not the chained one, and where the chain is checked.
    with pytest.raises(SystemExit):
        main(["audit", "show", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "cut_to_tenant" in helptext and "fairshare audit verify" in helptext
    assert "no longer hashes to its digest" in helptext


def test_by_default_each_record_is_one_readable_line_and_a_tenant_sees_its_changes(
        audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(1, 9):
        copy_tenant(audited, "hooli", f"t-{n:02d}")
    assert audited.cp.reload().ok
    audited.edit("acme", "embedder: {split: {v1: 90, v2: 10}}", "embedder: {split: {v1: 50, v2: 50}}")
    assert audited.cp.reload().ok
    refuse_two_tenants(audited)
    records = audited.records()

    rc, out, _ = show(audited, capsys)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == len(records) == 3
    for line, r in zip(lines, records, strict=True):
        assert line.startswith(f"seq {r['seq']} {r['time']} {r['kind']}: ")
    assert all(len(line) < 300 and "{" not in line for line in lines)
    assert f"config {records[0]['config_version']} (first)" in lines[0]
    assert "12 tenants: acme, globex, hooli, initech, t-01 and 7 more (12 added)" in lines[0]
    assert f"config {records[1]['config_version']} (was {records[0]['config_version']}); 1 tenant: acme" in lines[1]
    assert "refused, still serving" in lines[2] and "2 tenants: acme, hooli" in lines[2]

    rc, out, _ = show(audited, capsys, "--tenant", "acme")
    assert rc == 0
    text = out.splitlines()
    assert text[0].startswith("seq 1 ") and "tenants" not in text[0]
    assert text[1] == "   acme (added): own_models, own_routes, pii, quotas, routes, serving, splits"
    change = text.index("   acme: splits")
    assert text[change - 1].startswith("seq 2 ")
    # The compliance report's rendering of a split's rows, before -> after.
    assert text[change + 1] == "     splits: embedder v1 90%, embedder v2 10% -> embedder v1 50%, embedder v2 50%"
    reasons = [line for line in text if line.startswith("     reason: ")]
    assert len(reasons) == 1 and "acme.yaml" in reasons[0]
    named = out.replace(str(audited.config.parent), "")  # the tmp folder's name may hold "t-0" (pytest-0)
    assert not [other for other in ("hooli", "globex", "initech", "t-0") if other in named]


def test_a_tenant_no_record_names_is_unknown_unless_the_config_has_it(
        audited: Audited, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert audited.cp.reload().ok
    monkeypatch.chdir(audited.config.parent)  # the default --config: ./config
    rc = main(["audit", "show", "--log", str(audited.log_path), "--tenant", "nobody"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert "error: unknown tenant 'nobody': no audit record names it" in err and "acme, globex" in err

    copy_tenant(audited, "hooli", "newco")  # in the config, not yet loaded: no record names it
    rc, out, err = show(audited, capsys, "--tenant", "newco", "--config", str(audited.config))
    assert rc == 0 and out == "" and "no audit record names tenant newco" in err

    rc, out, err = show(audited, capsys, "--tenant", "acme", "--since", "2999-01-01")
    assert rc == 0 and out == "" and "no audit record names tenant acme in the period" in err
    assert "1 record(s) name it" in err


def test_since_and_until_take_a_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, fsync=False)
    now, stamp = time.time(), audit_log.rfc3339
    for ago, name in ((3 * 86400, "three-days"), (3 * 3600, "three-hours"), (0, "now")):
        monkeypatch.setattr(audit_log, "rfc3339", lambda ts=None, at=now - ago: stamp(at))
        log.append("config.refused", summary=name, reasons=[], tenants=[])

    def summaries(*extra: str) -> list[str]:
        capsys.readouterr()
        assert main(["audit", "show", "--log", str(path), *extra]) == 0
        return [line.rsplit("; ", 1)[-1] for line in capsys.readouterr().out.splitlines()]

    assert summaries("--since", "30m") == ["now"]
    assert summaries("--since", "4h") == ["three-hours", "now"]
    assert summaries("--since", "7d") == ["three-days", "three-hours", "now"]
    assert summaries("--since", "1w", "--until", "1h") == ["three-days", "three-hours"]
    capsys.readouterr()
    assert main(["audit", "show", "--log", str(path), "--since", "1x"]) == 2
    assert "expected a duration back from now (30m, 1h, 7d)" in capsys.readouterr().err
