"""The endpoints file `fairshare run` writes (endpoints.yaml), watched for edits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from watchfiles import awatch

from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.config.errors import ConfigError
from xds_server.config.loader import stat_key
from xds_server.endpoints.source import EndpointSource

log = logging.getLogger("fairshare.endpoints")


class StaticEndpoints(EndpointSource):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.error: str | None = None
        # The file's stat when last read without a problem: a reload re-reads it only once it changed.
        self._read: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def status(self) -> dict[str, object]:
        return {"source": "static", "path": str(self.path), "last_error": self.error}

    async def _start(self) -> None:
        self._bind()
        self.reload()
        self._task = asyncio.create_task(self._watch())

    def for_reload(self) -> EndpointDirectory:
        """Re-read the file if it changed since it was last read well: a bad file refuses the reload with every
        problem, every time. Unchanged, it is not parsed again (with 40 cells' gateways in it, a millisecond of
        every edit)."""
        try:
            seen = stat_key(self.path.stat())
        except OSError:
            seen = None  # EndpointDirectory.load reports it
        if seen is not None and seen == self._read:
            return self.current()
        directory = EndpointDirectory.load(self.path)
        self.error, self._read = None, seen
        self._publish(directory)
        return self.current()

    def reload(self) -> EndpointDirectory:
        """Read the file again after an edit. A bad file is reported (with every problem) and the last good
        endpoints keep serving."""
        try:
            return self.for_reload()
        except ConfigError as err:
            self.error = err.render()
            log.error("endpoints file rejected; keeping the last good endpoints\n%s", self.error)
            return self.current()

    async def _watch(self) -> None:
        # The parent folder: an editor or `fairshare run` may replace the file rather than write it. Only
        # this file's changes wake us (its folder also holds the local platform's busy logs).
        async for _changes in awatch(self.path.parent, debounce=50, step=25, stop_event=self._stop,
                                     watch_filter=lambda _change, p: Path(p) == self.path,
                                     ignore_permission_denied=True):
            self.reload()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
