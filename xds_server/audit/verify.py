"""`fairshare audit verify`: walk the chain across every file of the log and name the first break.

An edited record fails at that record (its digest no longer matches); a removed record fails at the
one after it (its `prev` names a digest that is not the record before, its `seq` skips); a last line
cut short is reported as a truncated tail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.audit.log import AuditError, digest_of, log_files
from xds_server.config.files import UnreadableFile, read_regular


@dataclass(frozen=True)
class Break:
    file: Path
    line: int
    seq: int | None
    reason: str

    def __str__(self) -> str:
        at = f"seq {self.seq}" if self.seq is not None else "seq unknown"
        return f"{self.file}: line {self.line} ({at}): {self.reason}"


@dataclass
class Verified:
    """The outcome of a walk: every record up to the first break (all of them when it holds)."""

    path: Path
    files: list[Path]
    records: list[dict[str, Any]] = field(default_factory=list)
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def render(self) -> str:
        if self.broken is not None:
            return (f"audit log {self.path} is BROKEN at {self.broken}\n"
                    f"{len(self.records)} records before it verify; nothing after it can be trusted")
        if not self.records:
            return f"audit log {self.path}: no records yet"
        first, last = self.records[0], self.records[-1]
        return (f"audit log {self.path}: OK, {len(self.records)} records in {len(self.files)} file(s), "
                f"seq {first['seq']}..{last['seq']}, {first['time']} .. {last['time']}, last digest {last['digest']}")


def _lines(file: Path) -> Iterator[tuple[int, str, bool]]:
    try:
        data = read_regular(file)  # a FIFO (or /dev/zero) among the log's files is refused, not read forever
    except UnreadableFile as err:
        raise AuditError(f"{file}: {err}") from None
    lines = data.split(b"\n")
    # The split leaves a last element: empty when the file ends in a newline, else a line cut short.
    for i, raw in enumerate(lines, start=1):
        last = i == len(lines)
        if last and not raw:
            return
        yield i, raw.decode("utf-8", "replace"), not last


def verify(path: str | Path) -> Verified:
    path = Path(path)
    files = log_files(path)
    out = Verified(path, files)
    if not files:
        return out
    prev: str | None = None
    seq = 0
    for fi, file in enumerate(files):
        for line_no, text, complete in _lines(file):
            if not text.strip():
                out.broken = Break(file, line_no, None, "empty line inside the log")
                return out
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                reason = ("truncated tail: the last record was cut short (a crash mid-write, or the file was cut)"
                          if not complete and fi == len(files) - 1 else f"not a JSON record ({err})")
                out.broken = Break(file, line_no, seq + 1, reason)
                return out
            got_seq = record.get("seq")
            if not complete and fi == len(files) - 1:
                out.broken = Break(file, line_no, got_seq if isinstance(got_seq, int) else None,
                                   "truncated tail: the last line has no newline (cut short)")
                return out
            if not isinstance(got_seq, int):
                out.broken = Break(file, line_no, None, "record has no integer seq")
                return out
            if record.get("digest") != digest_of(record):
                out.broken = Break(file, line_no, got_seq,
                                   "digest mismatch: the record was edited after it was written")
                return out
            if got_seq != seq + 1:
                what = (f"seq {seq + 1}..{got_seq - 1} missing: records were removed" if got_seq > seq + 1
                        else f"seq goes back from {seq} to {got_seq}: records were reordered or copied in")
                out.broken = Break(file, line_no, got_seq, what)
                return out
            if record.get("prev") != prev:
                out.broken = Break(file, line_no, got_seq,
                                   f"prev mismatch: names {record.get('prev')} but the record before has "
                                   f"{prev}: a record before it was removed or replaced")
                return out
            out.records.append(record)
            prev, seq = record["digest"], got_seq
    return out
