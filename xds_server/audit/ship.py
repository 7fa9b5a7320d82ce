"""Shipping closed audit files to S3, write-once where the bucket allows it.

A bucket with S3 Object Lock enabled (found with get_object_lock_configuration) gets each file with a
retention date: in COMPLIANCE mode nobody, the account root included, can delete or overwrite it
before then. The bucket's default retention rule sets mode and period when it has one; otherwise
`mode` and `retention_days` here. A bucket without object lock still gets the file (and the chain's
digests make an edit detectable), with a warning that it is not write-once.

Shipping runs on a thread of its own, off the publish path; a file that could not be shipped stays
listed as pending and is retried at the next rotation (or `flush()`)."""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from xds_server.audit.log import AuditError

log = logging.getLogger("fairshare.audit")


def parse_s3_prefix(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` -> (bucket, prefix ending in / or empty)."""
    if not url.startswith("s3://"):
        raise AuditError(f"audit shipping target must be s3://BUCKET[/PREFIX], got {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise AuditError(f"audit shipping target {url!r} names no bucket")
    return bucket, (prefix.rstrip("/") + "/") if prefix.strip("/") else ""


class S3Shipper:
    def __init__(self, url: str, *, mode: str = "COMPLIANCE", retention_days: int = 365,
                 client: Any = None) -> None:
        if mode not in ("COMPLIANCE", "GOVERNANCE"):
            raise AuditError(f"object lock mode must be COMPLIANCE or GOVERNANCE, got {mode!r}")
        if retention_days < 1:
            raise AuditError(f"audit retention must be at least 1 day, got {retention_days}")
        self.bucket, self.prefix = parse_s3_prefix(url)
        self.mode, self.retention_days = mode, retention_days
        self._client = client
        self._lock_rule: tuple[str, int] | bool | None = False  # False: not looked up yet
        self._pending: list[Path] = []
        self._mutex = threading.Lock()
        self._worker: threading.Thread | None = None
        self.shipped: dict[str, str] = {}  # S3 key -> the lock it got ("none" when the bucket has none)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def object_lock(self) -> tuple[str, int] | None:
        """(mode, days) each shipped file is locked for; None when the bucket has no object lock."""
        if self._lock_rule is not False:
            return self._lock_rule  # type: ignore[return-value]
        from botocore.exceptions import ClientError

        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise
            conf = {}
        if conf.get("ObjectLockEnabled") != "Enabled":
            log.warning("audit bucket %s has no object lock: shipped files can be deleted (edits are still "
                        "detected by the chain)", self.bucket)
            self._lock_rule = None
            return None
        rule = conf.get("Rule", {}).get("DefaultRetention", {})
        days = rule.get("Days") or (rule["Years"] * 365 if rule.get("Years") else self.retention_days)
        self._lock_rule = (rule.get("Mode", self.mode), int(days))
        return self._lock_rule

    def key_for(self, file: Path) -> str:
        return f"{self.prefix}{file.name}"

    def ship(self, file: Path) -> str:
        """Upload one closed file now; returns its key. Raises on failure (boto3's errors)."""
        body = file.read_bytes()
        extra: dict[str, Any] = {}
        lock = self.object_lock()
        if lock is not None:
            mode, days = lock
            extra = {"ObjectLockMode": mode,
                     "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=days)}
        key = self.key_for(file)
        # Object lock needs an integrity checksum on the upload; it also guards the bytes in transit.
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                               ContentType="application/x-ndjson",
                               Metadata={"sha256": hashlib.sha256(body).hexdigest()}, **extra)
        self.shipped[key] = f"{lock[0]} for {lock[1]} days" if lock else "none"
        log.info("shipped audit file %s to s3://%s/%s (object lock: %s)", file, self.bucket, key,
                 self.shipped[key])
        return key

    def __call__(self, file: Path) -> None:
        """The AuditLog's rotation hook: queue the file and ship in the background."""
        with self._mutex:
            self._pending.append(file)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain, name="audit-ship", daemon=True)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            with self._mutex:
                if not self._pending:
                    self._worker = None
                    return
                file = self._pending[0]
            try:
                self.ship(file)
            except Exception as err:  # kept pending: retried at the next rotation or flush
                log.error("could not ship audit file %s to s3://%s/%s: %s", file, self.bucket, self.prefix, err)
                with self._mutex:
                    self._worker = None
                return
            with self._mutex:
                self._pending.remove(file)

    def flush(self, timeout: float = 60) -> list[Path]:
        """Ship what is pending (waiting for the background thread); returns what is still pending."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        self._drain()
        with self._mutex:
            return list(self._pending)
