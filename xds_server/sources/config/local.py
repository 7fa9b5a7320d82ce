"""The local folder (today's `--config` directory and the policy directory), watched with inotify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from xds_server.policy.backends import default_policy_dir
from xds_server.sources.config.base import Revision, Tracker
from xds_server.sources.config.file_events import settled_changes


@dataclass
class LocalSource:
    directory: Path
    # None: $FAIRSHARE_POLICY_DIR (else the repository's policy/), read at each load as before.
    policies: Path | None = None
    kind: str = "local"
    tracker: Tracker = field(default_factory=Tracker)

    @property
    def location(self) -> str:
        return str(self.directory)

    @property
    def config_dir(self) -> Path:
        return self.directory

    @property
    def policy_dir(self) -> Path:
        return self.policies or default_policy_dir()

    def checkout(self) -> Revision:
        # A folder has no revision of its own: the applied config's version (a content hash) identifies it.
        self.tracker.pending = Revision("local", None, f"local folder {self.directory}")
        return self.tracker.pending

    def verify(self, revision: Revision) -> str | None:
        return None

    def settle(self, ok: bool) -> Revision | None:
        return self.tracker.settle(ok)

    async def changes(self, extra: list[Path], stop: asyncio.Event | None) -> AsyncIterator[frozenset[str] | None]:
        # The policies are watched like the config: a merged policy change is served without a restart. Each
        # set of changes comes once its files are closed (file_events.py): an edit is read at once, a file
        # still being written is not read at all. The paths are the events' own: a load told which tenant
        # files changed reads only those.
        async for paths in settled_changes([self.config_dir, self.policy_dir, *extra], stop):
            yield paths

    def status(self) -> dict[str, object]:
        return self.tracker.status(self.kind, self.location)
