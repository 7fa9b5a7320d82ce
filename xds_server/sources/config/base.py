"""One interface for where the config and policies come from: a local folder, a versioned bundle on S3, or
a git checkout a sidecar keeps current. The control plane's reload loop drives every source the same way:

    async for paths in source.changes(extra, stop):   # something may have changed (these paths, if known)
        revision = source.checkout()              # pin what the next load reads (may fetch; SourceError)
        ... load source.config_dir / source.policy_dir, compile ...
        source.verify(revision)                   # still that revision? (a sidecar may move a checkout)
        source.settle(ok)                         # served, or refused: the last good one stays in place

A source always presents its revision at the same two paths (`config_dir`, `policy_dir`): the loader's
per-file cache and the policy engine are keyed by path, so a new revision that changes one tenant re-reads
one file, and the embedded policy engine (a worker process) is reused, not started again per revision.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from watchfiles import Change


class SourceError(Exception):
    """A revision that cannot be read: names the source and the revision (bucket, key, version)."""


@dataclass(frozen=True)
class Revision:
    """One revision of the config and policies, as the audit log records it: where it came from, which
    revision of that place (S3 VersionId, git commit; None for a local folder, whose applied config
    version identifies it), and who made it where the source knows (git author, S3 `author` metadata)."""

    kind: str  # "local" | "s3" | "git"
    id: str | None
    source: str  # in words: "s3://bucket/key version 3HL4kqtJ..."
    author: str | None = None
    detail: dict[str, str] = field(default_factory=dict)  # etag, sha256, bundle revision, published_at, ...

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "id": self.id, "source": self.source, "author": self.author,
                "detail": dict(self.detail)}


class ConfigSource(Protocol):
    kind: str

    @property
    def location(self) -> str: ...

    @property
    def config_dir(self) -> Path: ...

    @property
    def policy_dir(self) -> Path: ...

    def checkout(self) -> Revision:
        """Pin the revision the next load reads at config_dir/policy_dir; raises SourceError naming the
        revision when it cannot be fetched or is corrupt."""
        ...

    def verify(self, revision: Revision) -> str | None:
        """After the load: None if everything read was `revision`, else why the load must be discarded."""
        ...

    def settle(self, ok: bool) -> Revision | None:
        """The outcome of the load of the last checkout (or failed checkout): the revision it was about.
        On a refusal the last good revision is put back in place (where the source owns the files)."""
        ...

    def changes(self, extra: list[Path], stop: asyncio.Event | None) -> AsyncIterator[frozenset[str] | None]:
        """Yields whenever a new revision may be there, or one of `extra` (e.g. the endpoints file)
        changed: the paths that changed where the source knows them exactly (a local folder's inotify
        events), else None (anything may have changed); ends when `stop` is set."""
        ...

    def status(self) -> dict[str, object]: ...


@dataclass
class Tracker:
    """What every source remembers between loads: the revision being loaded, the one serving, the last
    refused (and why the last check failed, if it did)."""

    pending: Revision | None = None
    serving: Revision | None = None
    refused: Revision | None = None
    check_error: str | None = None
    checked_at: float | None = None  # when the source last looked for a new revision (sources that poll)

    def settle(self, ok: bool) -> Revision | None:
        revision, self.pending = self.pending, None
        if revision is None:
            return None
        if ok:
            self.serving = revision
            if self.refused is not None and self.refused.id == revision.id:
                self.refused = None
        else:
            self.refused = revision
        return revision

    def status(self, kind: str, location: str) -> dict[str, object]:
        return {
            "kind": kind,
            "location": location,
            "serving": self.serving.to_json() if self.serving else None,
            "refused": self.refused.to_json() if self.refused else None,
            "check_error": self.check_error,
        }


def watch_filter(paths: list[Path]) -> Callable[[Change, str], bool]:
    """A watchfiles filter that passes changes at or under `paths` only."""
    prefixes = [str(p) for p in paths]

    def passes(_change: Change, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in prefixes)

    return passes


async def merged(*streams: AsyncIterator[None]) -> AsyncIterator[None]:
    """Every item of every stream as it comes; ends when all have ended."""
    queue: asyncio.Queue[bool] = asyncio.Queue()

    async def pump(stream: AsyncIterator[None]) -> None:
        try:
            async for _ in stream:
                await queue.put(True)
        finally:
            await queue.put(False)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    running = len(tasks)
    try:
        while running:
            if await queue.get():
                yield None
            else:
                running -= 1
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
