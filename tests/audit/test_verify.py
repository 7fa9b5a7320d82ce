"""`fairshare audit verify`: an edited record fails at that record, a removed one at the next, a cut
tail is reported; rotation keeps one chain across files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from xds_server.audit import AuditError, AuditLog, verify
from xds_server.audit.log import log_files
from xds_server.cli import main


def write(path: Path, n: int, max_bytes: int = 1 << 20) -> AuditLog:
    log = AuditLog(path, max_bytes=max_bytes)
    for i in range(n):
        log.append("config.applied", tenants=[f"t{i:05d}"], decisions=[{"tenant": f"t{i:05d}", "result": {}}])
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_an_intact_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    result = verify(path)
    assert result.ok and [r["seq"] for r in result.records] == [1, 2, 3, 4, 5]
    assert main(["audit", "verify", "--log", str(path)]) == 0
    assert "OK, 5 records" in capsys.readouterr().out


def test_an_edited_record_fails_at_that_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    text = lines(path)
    text[2] = text[2].replace('"t00002"', '"t99999"')  # the third record names another tenant
    path.write_text("".join(text))
    result = verify(path)
    assert result.broken is not None
    assert (result.broken.file, result.broken.line, result.broken.seq) == (path, 3, 3)
    assert "digest mismatch" in result.broken.reason and len(result.records) == 2
    assert main(["audit", "verify", "--log", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: line 3 (seq 3): digest mismatch" in err


def test_an_edited_record_with_its_digest_recomputed_fails_at_the_next(tmp_path: Path) -> None:
    """Rewriting a record and its digest does not help: the next record's prev still names the old one."""
    from xds_server.audit.log import digest_of

    path = tmp_path / "audit.jsonl"
    write(path, 4)
    text = lines(path)
    record = json.loads(text[1])
    record["tenants"] = ["t99999"]
    record["digest"] = digest_of(record)
    text[1] = json.dumps(record) + "\n"
    path.write_text("".join(text))
    broken = verify(path).broken
    assert broken is not None and (broken.line, broken.seq) == (3, 3) and "prev mismatch" in broken.reason


def test_a_removed_record_fails_at_the_next_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    text = lines(path)
    del text[1]  # seq 2
    path.write_text("".join(text))
    broken = verify(path).broken
    assert broken is not None and (broken.file, broken.line, broken.seq) == (path, 2, 3)
    assert "seq 2..2 missing" in broken.reason
    assert main(["audit", "verify", "--log", str(path)]) == 1
    assert "line 2 (seq 3)" in capsys.readouterr().err
    # The first record removed: the log starts at seq 2.
    write(tmp_path / "b.jsonl", 3)
    (tmp_path / "b.jsonl").write_text("".join(lines(tmp_path / "b.jsonl")[1:]))
    broken = verify(tmp_path / "b.jsonl").broken
    assert broken is not None and (broken.line, broken.seq) == (1, 2)


def test_a_truncated_tail_is_reported_and_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    broken = verify(path).broken
    assert broken is not None and broken.line == 3 and "truncated tail" in broken.reason
    with pytest.raises(AuditError, match="line 3: the audit log ends in a partial record"):
        AuditLog(path)


def test_rotation_keeps_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 40, max_bytes=2048)
    files = log_files(path)
    assert len(files) > 3 and files[-1] == path and files[0].name == "audit.jsonl.000001"
    assert all(f.stat().st_size <= 2048 for f in files)
    # Each new file's first record chains to the last record of the file before.
    for older, newer in itertools.pairwise(files):
        assert json.loads(lines(newer)[0])["prev"] == json.loads(lines(older)[-1])["digest"]
    result = verify(path)
    assert result.ok and len(result.records) == 40
    # A reopened log continues the chain in the active file.
    assert AuditLog(path, max_bytes=2048).append("offboard", tenants=["t00000"])["seq"] == 41
    # A whole rotated file removed: the break is at the first record after the gap.
    files[1].unlink()
    broken = verify(path).broken
    assert broken is not None and broken.file == files[2] and broken.line == 1 and "missing" in broken.reason


def test_verify_without_a_log_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--log", str(tmp_path / "none.jsonl")]) == 2
    assert "no audit log at" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["log", "rotated"])
def test_a_fifo_or_device_is_refused_by_name_not_read_forever(tmp_path: Path, where: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """read_bytes() of a FIFO waited for a writer, of /dev/zero for an end: `audit verify` hung for good."""
    import os
    import threading

    path = tmp_path / "audit.jsonl"
    fifo = path if where == "log" else tmp_path / "audit.jsonl.000001"
    if where == "rotated":
        write(path, 1)
    os.mkfifo(fifo)
    rc: list[int] = []
    for log in (path, Path("/dev/zero")) if where == "log" else (path,):
        running = threading.Thread(target=lambda log=log: rc.append(main(["audit", "verify", "--log", str(log)])),
                                   daemon=True)
        running.start()
        running.join(60)  # a guard against hanging the suite: it answers at once or never
        assert not running.is_alive(), f"audit verify --log {log} did not return"
    err = capsys.readouterr().err
    assert set(rc) == {2} and "Traceback" not in err
    if where == "log":
        assert f"error: --log {path}: not a regular file (a FIFO)" in err
        assert "error: --log /dev/zero: not a regular file (a character device)" in err
    else:
        assert f"error: {fifo}: not a regular file (a FIFO)" in err
