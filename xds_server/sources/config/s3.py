"""A versioned S3 object holding a config bundle (xds_server/sources/config/bundle.py).

The object's VersionId (its ETag where the bucket is not versioned) is polled every `poll_seconds`. A new
version is downloaded, checked (sha256, bundle, digest) and unpacked into a fresh directory under `root`;
the stable link `root/current` is flipped to it, and the control plane loads it like a local edit. A
version that is refused, or cannot be fetched, is not tried again; the link goes back to the last good
revision (so a reload for another reason, an endpoints change, still reads the last good config), and only
the serving revision and the one being loaded are kept on disk.

The endpoint and credentials are boto3's usual ones (AWS_ENDPOINT_URL for moto or another S3-compatible
store, IRSA's web identity in a cluster).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchfiles import awatch

from xds_server.policy.bundle import BundleError, parse_s3_url
from xds_server.sources.config import bundle as config_bundle
from xds_server.sources.config.base import Revision, SourceError, Tracker, merged

log = logging.getLogger("fairshare.controlplane")

CURRENT = "current"
REVISIONS = "revisions"
REVISION_FILE = "revision.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class _Head:
    version: str  # VersionId, or the ETag where the bucket is not versioned
    etag: str
    metadata: dict[str, str]


@dataclass
class S3Source:
    url: str  # s3://bucket/key
    root: Path  # where revisions are unpacked (the control plane's state dir)
    poll_seconds: float = 10.0
    kind: str = "s3"
    tracker: Tracker = field(default_factory=Tracker)
    _client: Any = None
    _serving_dir: Path | None = None
    _pending_dir: Path | None = None
    _seen: str | None = None  # the last version tried, served or refused: not fetched again
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        try:
            self.bucket, self.key = parse_s3_url(self.url)
        except BundleError as err:
            raise SourceError(str(err)) from None
        # Revisions unpacked by an earlier process are not trusted to be whole: start clean.
        config_bundle.remove_tree(self.root / REVISIONS)
        self._link.unlink(missing_ok=True)
        (self.root / REVISIONS).mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        return self.url

    @property
    def _link(self) -> Path:
        return self.root / CURRENT

    @property
    def config_dir(self) -> Path:
        return self._link / "config"

    @property
    def policy_dir(self) -> Path:
        return self._link / "policy"

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _head(self) -> _Head:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._s3().head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "?")
            raise SourceError(f"cannot read s3://{self.bucket}/{self.key}: {_named(code)}") from None
        except BotoCoreError as err:
            raise SourceError(f"cannot read s3://{self.bucket}/{self.key}: {err}") from None
        etag = str(answer.get("ETag", "")).strip('"')
        version = answer.get("VersionId")
        return _Head(str(version) if version not in (None, "null") else f"etag:{etag}", etag,
                     dict(answer.get("Metadata") or {}))

    def checkout(self) -> Revision:
        """The object's latest version, fetched and unpacked unless it is the one serving (or was refused,
        in which case the serving one is read again)."""
        with self._lock:  # a retried first load beside the watch loop: one fetch and flip at a time
            return self._checkout()

    def _checkout(self) -> Revision:
        try:
            head = self._head()
        except SourceError as err:
            self.tracker.check_error = str(err)
            if self.tracker.serving is not None:
                log.warning("%s; still serving %s", err, self.tracker.serving.source)
                self.tracker.pending = self.tracker.serving
                return self.tracker.serving
            self.tracker.pending = Revision(self.kind, None, f"{self.url} (unreadable)")
            raise
        self.tracker.check_error = None
        if head.version == self._seen and self.tracker.serving is not None:
            self.tracker.pending = self.tracker.serving  # nothing new, or the new one was refused already
            return self.tracker.serving
        self._seen = head.version
        revision = self._revision(head)
        self.tracker.pending = revision
        where = f"s3://{self.bucket}/{self.key} version {head.version}"
        archive = self._get(head, where)
        try:
            files = config_bundle.check_archive(archive, head.metadata, where)
        except BundleError as err:
            raise SourceError(str(err)) from None
        self._counter += 1
        target = self.root / REVISIONS / f"{self._counter:06d}-{_UNSAFE.sub('_', head.version)[:64]}"
        config_bundle.remove_tree(target)
        try:
            config_bundle.unpack(files, target, self._serving_dir)
        except (BundleError, OSError) as err:
            config_bundle.remove_tree(target)
            raise SourceError(f"{where}: cannot unpack into {target}: {err}") from None
        (target / REVISION_FILE).write_text(json.dumps(revision.to_json()))
        self._pending_dir = target
        self._flip(target)
        return revision

    def _get(self, head: _Head, where: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        args: dict[str, str] = {"Bucket": self.bucket, "Key": self.key}
        if not head.version.startswith("etag:"):
            args["VersionId"] = head.version
        try:
            return bytes(self._s3().get_object(**args)["Body"].read())
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "?")
            raise SourceError(f"cannot fetch {where}: {_named(code)}") from None
        except BotoCoreError as err:
            raise SourceError(f"cannot fetch {where}: {err}") from None

    def _revision(self, head: _Head) -> Revision:
        detail = {"etag": head.etag}
        for name in ("sha256", "revision", "origin"):
            value = config_bundle.metadata_text(head.metadata, name)
            if value:
                detail[name] = value
        shown = head.version if not head.version.startswith("etag:") else f"ETag {head.etag} (bucket not versioned)"
        return Revision(self.kind, head.version, f"{self.url} version {shown}",
                        config_bundle.metadata_text(head.metadata, "author"), detail)

    def _flip(self, target: Path) -> None:
        """Point `current` at target in one rename: a reader sees the old revision or the new, never neither."""
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, self.root), tmp)
        os.replace(tmp, self._link)

    def verify(self, revision: Revision) -> str | None:
        return None  # only this source moves the link, between loads

    def settle(self, ok: bool) -> Revision | None:
        with self._lock:
            pending_dir, self._pending_dir = self._pending_dir, None
            if pending_dir is not None:
                if ok:
                    self._serving_dir = pending_dir
                elif self._serving_dir is not None:
                    self._flip(self._serving_dir)
                else:
                    self._link.unlink(missing_ok=True)
            # Only the serving revision stays on disk (the refused one, and any superseded, go).
            for path in (self.root / REVISIONS).iterdir():
                if path != self._serving_dir:
                    config_bundle.remove_tree(path)
            return self.tracker.settle(ok)

    async def changes(self, extra: list[Path], stop: asyncio.Event | None) -> AsyncIterator[frozenset[str] | None]:
        streams = [self._poll(stop)]
        if extra:
            streams.append(_watch(extra, stop))
        async for _ in merged(*streams):
            yield None

    async def _poll(self, stop: asyncio.Event | None) -> AsyncIterator[None]:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.poll_seconds)
                return
            except TimeoutError:
                pass
            try:
                head = await asyncio.to_thread(self._head)
            except SourceError as err:
                if self.tracker.check_error != str(err):
                    log.warning("%s; still serving %s", err,
                                self.tracker.serving.source if self.tracker.serving else "nothing")
                self.tracker.check_error = str(err)
                continue
            self.tracker.check_error = None
            self.tracker.checked_at = time.time()
            if head.version != self._seen:
                yield None

    def status(self) -> dict[str, object]:
        return {**self.tracker.status(self.kind, self.location), "poll_seconds": self.poll_seconds,
                "checked_at": self.tracker.checked_at}


async def _watch(paths: list[Path], stop: asyncio.Event | None) -> AsyncIterator[None]:
    async for _ in awatch(*paths, debounce=50, step=25, stop_event=stop, ignore_permission_denied=True):
        yield None


def _named(code: str) -> str:
    # A HEAD answer has no body: a missing bucket and a missing key are both a bare 404.
    known = {"404": "404 Not Found (no such bucket or key)", "NoSuchKey": "NoSuchKey (no such object)",
             "NoSuchBucket": "NoSuchBucket", "403": "AccessDenied (the role may not read it)",
             "AccessDenied": "AccessDenied (the role may not read it)"}
    return known.get(code, code)
