"""Retention of the logs the platform writes locally (`fairshare run`'s <state>/run: the control plane's,
every runtime replica's and every Envoy's): each line is kept for the days policy/retention gives its
file, the shortest period among the data classes of the tenants whose lines the file may hold. A line
older than that is removed from the front of the file; a file with no younger line is emptied.
`fairshare logs sweep` runs it; `--dry-run` only says what it would do.

Every gateway and replica log may hold a line of any tenant served, of one marked offboarded, and of one
whose file has been removed since: the audit trail remembers that tenant's class until its last line
(no newer than its removal) is past its period. Each file is held to every such tenant's class: the
shortest period wins. The classes are read from the tenant files as written, without the policies' other
decisions, so a config that some policy refuses (a region over its GPUs) still has its logs swept.

The audit log is not a log here: it is evidence with its own period (audit_days) and its own store
(object lock on S3). In a cluster the same periods apply to the log pipeline's indices
(docs/offboarding.md, Retention).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUERY = "fairshare/retention/result"
SUFFIXES = (".log",)
DAY = 86400.0
# A line's time: the first date and time in its opening characters. The runtime's JSON (`ts`), Envoy's
# access log (`time`), Envoy's own `[2026-01-31 12:00:00.123]` and the control plane's `2026-01-31
# 12:00:00,123`, all UTC on the platform's machines. A line without one (a traceback's) is as old as the
# line before it.
_LINE_TIME = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)")
_HEAD = 160
_CHUNK = 1 << 20


class RetentionError(Exception):
    """The policy gave no period for a file, or refused the classes: says which and why."""


@dataclass(frozen=True)
class Decision:
    path: Path
    keep_days: int
    # How long ago the file was last written, and how many of its lines are (or, with --dry-run, would
    # be) removed for being older than keep_days.
    age_days: float
    dropped_lines: int
    kept_lines: int
    done: bool

    @property
    def emptied(self) -> bool:
        return self.dropped_lines > 0 and self.kept_lines == 0

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "keep_days": self.keep_days, "age_days": round(self.age_days, 2),
                "dropped_lines": self.dropped_lines, "kept_lines": self.kept_lines,
                "deleted": self.done and self.emptied, "pruned": self.done and self.dropped_lines > 0}


def log_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def file_classes(config_dir: Path) -> dict[str, str | None]:
    """Each tenant file's data class as written (None: it names none), offboarded ones included. A file
    that does not parse counts as a class no period has: its lines get the shortest."""
    import yaml

    out: dict[str, str | None] = {}
    for path in sorted((config_dir / "tenants").glob("*.y*ml")):
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            raw = {"data_class": "unreadable"}
        value = raw.get("data_class") if isinstance(raw, dict) else "unreadable"
        out[path.stem] = value if isinstance(value, str) or value is None else "unreadable"
    return out


def removed_classes(audit_log: Path | None) -> list[tuple[str, str | None, float]]:
    """(tenant, data class, when) of every tenant whose removal from the config the audit trail records."""
    if audit_log is None:
        return []
    from xds_server.audit.log import AuditError, AuditLog
    from xds_server.audit.log import log_files as audit_files
    from xds_server.audit.report import record_time
    from xds_server.audit.trail import decision_of

    if not audit_files(audit_log):
        return []
    out = []
    try:
        for record in AuditLog(audit_log).records():
            if record.get("kind") != "config.applied":
                continue
            for tenant in record.get("removed") or ():
                decision = decision_of(record, tenant) or {}
                pii = ((decision.get("result") or {}).get("pii") or {}).get("before") or {}
                at = record_time(record).timestamp()
                out.append((tenant, pii.get("data_class"), at))
    except (AuditError, OSError, ValueError, KeyError) as err:
        raise RetentionError(f"the audit trail {audit_log} cannot be read for the classes of removed tenants: "
                             f"{err}") from err
    return out


def _query(logs: dict[str, list[dict[str, str]]], policy_dir: Path | None) -> dict[str, Any]:
    from xds_server.config.model import PolicySettings
    from xds_server.policy.backends import default_policy_dir, make_engine
    from xds_server.policy.sources import PolicySources

    engine = make_engine(PolicySettings())
    try:
        engine.load(PolicySources.load(policy_dir or default_policy_dir()), {})
        result = engine.query(QUERY, {"logs": {name: {"tenants": t} for name, t in logs.items()}})
    finally:
        engine.close()
    if not isinstance(result, dict) or not isinstance(result.get("keep_days"), dict):
        raise RetentionError(f"policy/retention gave no keep_days (data.{QUERY.replace('/', '.')} is {result!r})")
    return result


def _entry(data_class: str | None) -> dict[str, str]:
    return {"data_class": data_class} if data_class else {}


def periods(files: list[Path], classes: list[dict[str, str]], policy_dir: Path | None = None) -> dict[str, int]:
    """The policy's keep_days for each file, by path."""
    result = _query({str(f): classes for f in files}, policy_dir)
    for violation in result.get("violations") or []:
        # Not fatal: the file already gets the shortest period. Said, so the class gets a period.
        print(f"warning: {violation.get('subject')}: {violation.get('message')}")
    keep = {str(k): int(v) for k, v in result["keep_days"].items()}
    missing = [str(f) for f in files if str(f) not in keep]
    if missing:
        raise RetentionError(f"policy/retention gave no period for {', '.join(missing)}")
    return keep


def tenant_classes(config_dir: Path, audit_log: Path | None, now: float,
                   policy_dir: Path | None = None) -> list[dict[str, str]]:
    """The classes every log is held to: each tenant file's, and each removed tenant's while a line of
    it may still be within its period (its lines are no newer than its removal)."""
    present = file_classes(config_dir)
    out = [_entry(c) for c in present.values()]
    gone = [(t, c, at) for t, c, at in removed_classes(audit_log) if t not in present]
    if gone:
        days = _query({f"class:{c}": [_entry(c)] for _, c, _ in gone}, policy_dir)["keep_days"]
        out += [_entry(c) for _, c, at in gone if now - at <= int(days[f"class:{c}"]) * DAY]
    return out


def _line_time(line: bytes) -> float | None:
    found = _LINE_TIME.search(line, 0, _HEAD)
    if found is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in found.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    except ValueError:
        return None


def expired_prefix(path: Path, cutoff: float) -> tuple[int, int, int]:
    """(bytes, lines) at the front of `path` older than `cutoff`, and the lines after them. Lines are in
    the order written, so the first line at or after the cutoff ends the prefix. Lines before the first
    with a time are older than it; in a file with no time at all, the file's last write says."""
    offset = dropped = kept = 0
    lead_bytes = lead_lines = 0  # lines before the first with a time: as yet of unknown age
    seen_old = young = False
    with path.open("rb") as f:
        mtime = os.fstat(f.fileno()).st_mtime
        for line in f:
            at = _line_time(line)
            if at is None and not seen_old:
                lead_bytes, lead_lines = lead_bytes + len(line), lead_lines + 1
            elif at is not None and at >= cutoff:
                young, kept = True, lead_lines + 1
                # The rest is younger: counted, not parsed (a busy gateway's log is large).
                kept += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(_CHUNK), b""))
                break
            else:  # old, or as old as the old line before it
                offset, dropped = offset + lead_bytes + len(line), dropped + lead_lines + 1
                lead_bytes = lead_lines = 0
                seen_old = True
    if lead_lines and not young:  # no line with a time
        if mtime < cutoff:
            offset, dropped = offset + lead_bytes, dropped + lead_lines
        else:
            kept += lead_lines
    return offset, dropped, kept


def drop_prefix(path: Path, offset: int) -> None:
    """Remove the first `offset` bytes of `path` in place. Not a new file renamed over it: each process
    appends to the file it opened (O_APPEND), so the lines it writes meanwhile are copied along and the
    next ones go to the new end. A line appended in the instant between the last copy and the truncate
    can be lost; none is kept past its period."""
    with path.open("r+b") as f:
        read_at, write_at = offset, 0
        while True:
            f.seek(read_at)
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            f.seek(write_at)
            f.write(chunk)
            f.flush()
            read_at += len(chunk)
            write_at += len(chunk)
        f.truncate(write_at)


def sweep(run_dir: Path, config_dir: Path, *, dry_run: bool = False, now: float | None = None,
          policy_dir: Path | None = None, audit_log: Path | None = None) -> list[Decision]:
    now = time.time() if now is None else now
    files = log_files(run_dir)
    if not files:
        return []
    keep = periods(files, tenant_classes(config_dir, audit_log, now, policy_dir), policy_dir)
    out: list[Decision] = []
    for f in files:
        try:
            age = (now - f.stat().st_mtime) / DAY
            offset, dropped, kept = expired_prefix(f, now - keep[str(f)] * DAY)
            if offset and not dry_run:
                drop_prefix(f, offset)
        except FileNotFoundError:
            continue
        out.append(Decision(f, keep[str(f)], age, dropped, kept, not dry_run))
    return out
