"""An append-only, hash-chained JSON-lines audit log.

Each record is one line of canonical JSON (sorted keys, no spaces). It carries `seq` (1, 2, ...),
`time` (RFC 3339, UTC), `kind`, the caller's fields, `prev` (the previous record's digest; null for the
first record of the log) and `digest` (sha256 over the record's canonical form without `digest`). An
edited record no longer matches its digest; a removed one breaks the next record's `prev` and `seq`.

Rotation is by size: the active file `audit.jsonl` is renamed `audit.jsonl.000001`, `.000002`, ...
(oldest first) and a fresh file is started whose first record chains to the last record of the file
before. Closed files can be handed to a shipper (S3, object lock: ship.py).

Records hold tenant ids, model names, regions and limits: never a token, key, password or request data.
`append` refuses field names that would carry one, and any value that looks like a JWT or a PEM key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Fields every record has, which callers may not set.
RESERVED = frozenset({"seq", "time", "kind", "prev", "digest"})
# Field names that would carry a secret or request data: refused at any depth.
FORBIDDEN_KEYS = frozenset({
    "token", "tokens", "jwt", "secret", "secrets", "password", "passphrase", "api_key", "apikey",
    "authorization", "credential", "credentials", "private_key", "key_material", "payload", "body",
    "prompt", "request", "response", "inputs", "outputs", "text",
})
# Nested field names that would carry a secret or request data, as they appear in the canonical line: one
# scan of the serialised record (a recursive walk cost more than the rest of a 10,000-tenant record).
_FORBIDDEN_KEY = re.compile('"(?:' + "|".join(sorted(FORBIDDEN_KEYS)) + ')":')
# A JWT (three base64url segments, the first a JSON header) or a PEM block anywhere in a value.
_SECRET_VALUE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
                           r"|-----BEGIN [A-Z ]*(?:PRIVATE )?KEY-----")
_SECRET_PREFIXES = ("eyJ", "-----BEGIN ")
KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class AuditError(Exception):
    """The audit log cannot be opened or written as asked (the message says what and where)."""


def canonical(record: dict[str, Any]) -> str:
    """The form a digest is computed over (and the form a line is written in)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_of(record: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of `record` without its `digest` field."""
    body = {k: v for k, v in record.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(canonical(body).encode()).hexdigest()


def rfc3339(ts: float | None = None) -> str:
    at = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def redact_secrets(text: str) -> str:
    """`text` with anything that looks like a JWT or PEM key replaced (for reasons quoted from elsewhere)."""
    return _SECRET_VALUE.sub("[redacted]", text)


def log_files(path: Path) -> list[Path]:
    """The log's files in chain order: rotated ones (oldest first), then the active file."""
    rotated = sorted(p for p in path.parent.glob(f"{path.name}.*") if p.suffix[1:].isdigit())
    return rotated + ([path] if path.exists() else [])


def _check_fields(fields: dict[str, Any]) -> None:
    reserved = sorted(RESERVED & set(fields))
    if reserved:
        raise AuditError(f"audit fields {reserved} are set by the log itself")
    secret = sorted(k for k in fields if k.lower() in FORBIDDEN_KEYS)
    if secret:
        raise AuditError(f"audit fields {secret}: records never carry secrets or request data")


class AuditLog:
    """The log at `path`. Thread-safe: the reload loop and an offboarding may append at once.

    `append(kind, **fields)` is the one way to write: it returns the record as written (with seq,
    time, prev and digest). `shipper`, when given, is called with each file rotation closes."""

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, *, fsync: bool = True,
                 shipper: Callable[[Path], None] | None = None) -> None:
        if max_bytes < 1024:
            raise AuditError(f"audit log rotation size must be at least 1024 bytes, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.shipper = shipper
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AuditError(f"cannot create the audit log's folder {self.path.parent}: {err.strerror}") from None
        self._seq, self._prev = self._tail()
        # When the active file's first record was written (None: it holds none): how long its records have
        # waited for a rotation to ship them (seal_if_older).
        self._oldest_unsealed = self._first_time(self.path)

    @property
    def seq(self) -> int:
        """The last record's seq (0: no record yet)."""
        return self._seq

    @property
    def head(self) -> str | None:
        """The last record's digest (None: no record yet): with `seq`, what a copy of the trail must end
        at, since a copy cut short at a record boundary still verifies."""
        return self._prev

    def _tail(self) -> tuple[int, str | None]:
        """The last record's seq and digest, from the newest file that has one. A last line cut short
        (a crash mid-write) is refused: appending after it would hide the break."""
        for file in reversed(log_files(self.path)):
            last = _last_line(file)
            if last is None:
                continue
            text, complete, line_no = last
            try:
                record = json.loads(text)
                seq, digest = int(record["seq"]), str(record["digest"])
            except (ValueError, KeyError, TypeError):
                complete = False
            if not complete:
                raise AuditError(
                    f"{file}: line {line_no}: the audit log ends in a partial record; run `fairshare audit "
                    f"verify --log {self.path}` and keep the file as evidence (move the log aside to start a new "
                    f"chain)")
            return seq, digest
        return 0, None

    @staticmethod
    def _first_time(file: Path) -> float | None:
        """The time of the first record in `file` (its mtime where that line does not say), None if none."""
        try:
            with file.open("rb") as f:
                first = f.readline()
            if not first.strip():
                return None
            return datetime.fromisoformat(json.loads(first)["time"]).timestamp()
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return file.stat().st_mtime

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        if not KIND.match(kind):
            raise AuditError(f"audit record kind {kind!r} must be dotted lowercase words (e.g. config.applied)")
        _check_fields(fields)
        with self._lock:
            record: dict[str, Any] = {"seq": self._seq + 1, "time": rfc3339(), "kind": kind, **fields,
                                      "prev": self._prev}
            try:
                body = canonical(record)
            except (TypeError, ValueError) as err:
                raise AuditError(f"audit record {kind}: not JSON ({err})") from None
            if (found := _FORBIDDEN_KEY.search(body)) is not None:
                raise AuditError(f"audit record {kind}: field {found.group()[:-1]} never goes in a record "
                                 "(no secrets or request data)")
            # Both patterns begin with a literal: a substring search (memchr-fast) rules a clean record out
            # at a tenth of the regex's cost; the regex runs only where one is present.
            if (_SECRET_PREFIXES[0] in body or _SECRET_PREFIXES[1] in body) and _SECRET_VALUE.search(body):
                raise AuditError(f"audit record {kind}: a value looks like a credential (JWT or key); "
                                 "records never carry secrets")
            digest = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
            # The digest goes in last: the line stays the canonical form with one field added, and
            # serialising once keeps a 10,000-tenant record cheap.
            line = f'{body[:-1]},"digest":"{digest}"}}\n'.encode()
            self._rotate_if_full(len(line))
            self._write(line)
            if self._oldest_unsealed is None:  # as a restart reads it back (_first_time)
                self._oldest_unsealed = datetime.fromisoformat(record["time"]).timestamp()
            self._seq, self._prev = record["seq"], digest
        record["digest"] = digest
        return record

    def _write(self, line: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                # One write of a whole line, so a reader never sees half a record from this process.
                os.write(fd, line)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise AuditError(f"cannot write the audit log {self.path}: {err.strerror}") from None

    def seal(self) -> Path | None:
        """Close the active file now, as a rotation does, and hand it to the shipper: a control plane that
        stops, on a disk that goes with it (a pod's emptyDir), ships its last records too. The chain goes on
        in the next file. None: no record since the last rotation."""
        with self._lock:
            return self._rotate_if_full(0, now=True)

    def seal_if_older(self, max_age_s: float, now: float | None = None) -> Path | None:
        """Seal the active file if its first record is at least `max_age_s` old: records wait no longer than
        that to be shipped, however quiet the control plane, so a node lost outright (no stop runs) loses at
        most that long of the trail. None: nothing to seal yet."""
        with self._lock:
            oldest = self._oldest_unsealed
            if oldest is None or (time.time() if now is None else now) - oldest < max_age_s:
                return None
            sealed = self._rotate_if_full(0, now=True)
            self._oldest_unsealed = None  # sealed, or the active file was empty or gone: nothing waits
            return sealed

    def _rotate_if_full(self, incoming: int, now: bool = False) -> Path | None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        if size == 0 or (size + incoming <= self.max_bytes and not now):
            return None
        rotated = log_files(self.path)[:-1]
        number = int(rotated[-1].suffix[1:]) + 1 if rotated else 1
        closed = self.path.with_name(f"{self.path.name}.{number:06d}")
        os.replace(self.path, closed)
        self._oldest_unsealed = None
        if self.shipper is not None:
            self.shipper(closed)
        return closed

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record in chain order, unchecked (`verify` checks)."""
        for file in log_files(self.path):
            with file.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)


def _last_line(file: Path) -> tuple[str, bool, int] | None:
    """The last non-empty line of `file`, whether it ends in a newline, and its line number."""
    with file.open("rb") as f:
        data = f.read()
    if not data.strip():
        return None
    complete = data.endswith(b"\n")
    lines = data.rstrip(b"\n").split(b"\n")
    return lines[-1].decode("utf-8", "replace"), complete, len(lines)
