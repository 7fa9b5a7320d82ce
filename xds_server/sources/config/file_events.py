"""Which files changed under a few folders, each set of changes handed on as soon as it is complete.

From inotify's own events rather than watchfiles': watchfiles reports a file as modified at its first write
and can only wait for a quiet period (25-50 ms) before handing a change on, which is both a delay on every
edit and no guarantee (a writer that pauses longer is read half-written). Here a file opened for writing
holds its set back until it is closed (or renamed, or deleted), so a half-written file is never read; a set
whose files are all closed goes on after a lull of QUIET_S, which gathers the rest of a burst (`cp -r`,
`git checkout`) into the same set.

Limits: a writer that keeps a file open is waited on for at most `open_wait_s` of quiet; a stream of changes
that never pauses is handed on every `max_wait_s` (a checkout of 10,000 files takes seconds). Editors' scratch
files (hidden names such as vim's `.x.yaml.swp`, names ending in `~`) are reported but never hold a set
back: vim keeps its swap file open for writing as long as it edits. A kernel queue overflow yields None:
the reader cannot know what changed and reads everything.

A root folder replaced whole (`rm -rf policy && cp -r new policy`, `mv config.new config`) is followed
through its parent's events: its old watches go (after a `mv` they followed the old folder's inode), the new
folder is watched when its name reappears, and each of the two steps reads everything, like an overflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inotify_simple import INotify, flags

log = logging.getLogger("fairshare.sources")

QUIET_S = 0.003
OPEN_WAIT_S = 0.25
MAX_WAIT_S = 0.5

_MASK = (flags.MODIFY | flags.CLOSE_WRITE | flags.ATTRIB | flags.CREATE | flags.DELETE | flags.MOVED_FROM
         | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF)
_CHANGED = _MASK & ~(flags.DELETE_SELF | flags.MOVE_SELF)
_WRITE_DONE = flags.CLOSE_WRITE | flags.DELETE | flags.MOVED_FROM
# On a root's parent: the root's own name coming or going. MASK_ADD: the parent may be watched already.
_PARENT_MASK = flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO | flags.ONLYDIR | flags.MASK_ADD


def _scratch(path: str) -> bool:
    name = os.path.basename(path)
    return name.startswith(".") or name.endswith("~")


@dataclass
class _Pending:
    """The changes since the last set handed on."""

    paths: set[str] = field(default_factory=set)
    writing: set[str] = field(default_factory=set)  # modified, not yet closed
    overflow: bool = False
    first: float = 0.0
    last: float = 0.0

    def due_at(self, open_wait_s: float, max_wait_s: float) -> float | None:
        """When this set goes on, if nothing else happens; None if there is nothing to hand on."""
        if not self.paths and not self.overflow:
            return None
        settled = self.last + (open_wait_s if self.writing else QUIET_S)
        return min(settled, self.first + max_wait_s)


@dataclass
class _Watches:
    inotify: INotify
    dirs: dict[int, str] = field(default_factory=dict)  # watch descriptor -> its directory
    parents: dict[int, dict[str, str]] = field(default_factory=dict)  # a root's parent's wd -> {name: root}

    def watch_parent(self, root: str) -> None:
        try:
            wd = self.inotify.add_watch(os.path.dirname(root) or ".", _PARENT_MASK)
        except OSError as err:
            log.warning("not following %s being replaced: %s", root, err)
            return
        self.parents.setdefault(wd, {})[os.path.basename(root)] = root

    def drop_tree(self, root: str) -> None:
        """Stop watching `root` and everything under it (removed, or moved away under another name)."""
        for wd, directory in list(self.dirs.items()):
            if directory == root or directory.startswith(root + os.sep):
                del self.dirs[wd]
                with contextlib.suppress(OSError):  # already gone with its folder
                    self.inotify.rm_watch(wd)

    def add_tree(self, root: str) -> list[str]:
        """Watch `root` and every directory under it; the files found there (a folder that appeared brings
        its files along, and no event of theirs will come)."""
        files: list[str] = []
        for directory, _subdirs, names in os.walk(root, followlinks=True):
            try:
                self.dirs[self.inotify.add_watch(directory, _MASK)] = directory
            except OSError as err:  # gone meanwhile, or not ours to read: as watchfiles, it is skipped
                log.debug("not watching %s: %s", directory, err)
                continue
            files.extend(os.path.join(directory, n) for n in names)
        return files


async def settled_changes(roots: Sequence[Path], stop: asyncio.Event | None = None,
                          open_wait_s: float = OPEN_WAIT_S,
                          max_wait_s: float = MAX_WAIT_S) -> AsyncIterator[frozenset[str] | None]:
    """Each complete set of changed paths under `roots` (None: the kernel's queue overflowed), until `stop`."""
    inotify = INotify(nonblocking=True)
    watches = _Watches(inotify)
    for root in roots:
        path = str(root)
        watches.watch_parent(path)
        if root.is_dir():
            watches.add_tree(path)
        else:
            log.warning("not watching %s: no such folder (yet: it is watched once it appears)", root)
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(inotify.fileno(), readable.set)
    pending = _Pending()
    try:
        while stop is None or not stop.is_set():
            due = pending.due_at(open_wait_s, max_wait_s)
            await _until(readable, stop, None if due is None else max(0.0, due - time.monotonic()))
            readable.clear()
            events = inotify.read(timeout=0)
            now = time.monotonic()
            if events:
                pending.first = pending.first or now
                pending.last = now
            for event in events:
                _record(watches, pending, event.wd, event.mask, event.name)
            due = pending.due_at(open_wait_s, max_wait_s)
            if due is not None and now >= due:
                changed = None if pending.overflow else frozenset(pending.paths)
                pending = _Pending()
                yield changed
    finally:
        loop.remove_reader(inotify.fileno())
        inotify.close()


def _record(watches: _Watches, pending: _Pending, wd: int, mask: int, name: str) -> None:
    if mask & flags.Q_OVERFLOW:
        pending.overflow = True
        return
    root = watches.parents.get(wd, {}).get(name)
    if root is not None and mask & (flags.DELETE | flags.MOVED_FROM | flags.CREATE | flags.MOVED_TO):
        watches.drop_tree(root)  # the folder that had the name, if any
        if mask & (flags.CREATE | flags.MOVED_TO):
            watches.add_tree(root)
        pending.overflow = True  # a whole folder came or went: read everything
    directory = watches.dirs.get(wd)
    if mask & flags.IGNORED:  # the watched folder is gone
        watches.dirs.pop(wd, None)
        return
    if directory is None:
        return
    path = os.path.join(directory, name) if name else directory
    if mask & flags.ISDIR and mask & (flags.CREATE | flags.MOVED_TO):
        pending.paths.update(watches.add_tree(path))
    if mask & _CHANGED:
        pending.paths.add(path)
    if mask & flags.MODIFY and not mask & flags.ISDIR and not _scratch(path):
        pending.writing.add(path)
    if mask & _WRITE_DONE:
        pending.writing.discard(path)


async def _until(readable: asyncio.Event, stop: asyncio.Event | None, timeout: float | None) -> None:
    """Until an event can be read, `stop` is set, or `timeout` seconds passed."""
    if readable.is_set():
        return
    waits = [asyncio.ensure_future(readable.wait())]
    if stop is not None:
        waits.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waits, return_exceptions=True)
