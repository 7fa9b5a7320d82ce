"""The endpoint-source interface: a current directory, and a stream of changes to it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from xds_server.compiler.endpoints import EndpointDirectory


class EndpointSourceError(Exception):
    """A source cannot be set up (no credentials, no namespace): said once, at start, with the reason."""


class EndpointSource(ABC):
    """Where each region's pools run, as they change. `current()` is cheap and safe from any thread;
    `changes()` yields the newest directory after each change. Changes that arrive while the consumer
    is busy are coalesced into the newest one: a directory is the whole truth, so nothing is lost by
    skipping the ones between."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directory = EndpointDirectory()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._started: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Begin following; returns once the first directory is known (it may wait on the source). A
        second call returns at once."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    @abstractmethod
    async def _start(self) -> None:
        """The implementation's start, run once."""

    @abstractmethod
    async def close(self) -> None:
        """Stop following; `current()` keeps the last directory."""

    def current(self) -> EndpointDirectory:
        with self._lock:
            return self._directory

    def status(self) -> dict[str, object]:
        """What the source is and how following it goes, for the control plane's /status."""
        return {"source": type(self).__name__}

    def for_reload(self) -> EndpointDirectory:
        """The directory a full reload compiles against. A reload re-reads everything it is given, so a
        source with something to re-read does so here (and may raise ConfigError: the reload is refused
        with the reason)."""
        return self.current()

    async def changes(self) -> AsyncIterator[EndpointDirectory]:
        changed = self._bind()
        while True:
            await changed.wait()
            changed.clear()
            yield self.current()

    def _bind(self) -> asyncio.Event:
        """Tie notifications to the running loop (the control plane's): implementations call it in start()."""
        if self._changed is None:
            self._loop = asyncio.get_running_loop()
            self._changed = asyncio.Event()
        return self._changed

    def _publish(self, directory: EndpointDirectory) -> bool:
        """Record a new directory, from any thread; wakes `changes()` when it differs. Returns whether it did.
        Admin ports and names are not part of an endpoint's identity, so a change in them alone is kept
        and announced too (the control plane's unload and inventory read them)."""
        with self._lock:
            if _same(directory, self._directory):
                return False
            self._directory = directory
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None and not loop.is_closed():
            # The loop may close between the check and the call: then nobody listens anymore.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(changed.set)
        return True


def _same(a: EndpointDirectory, b: EndpointDirectory) -> bool:
    def full(d: EndpointDirectory) -> dict[tuple[str, str], list[tuple[object, ...]]]:
        return {k: [(e.host, e.port, e.draining, e.admin_port, e.name) for e in eps] for k, eps in d.by_pool.items()}
    return full(a) == full(b)
