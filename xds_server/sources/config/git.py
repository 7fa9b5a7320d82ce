"""A git checkout kept current by a sidecar (git-sync): the repository's layout, `config/` and `policy/`.

git-sync checks every commit out into a worktree of its own and then flips a symlink (`--link`, e.g.
/git/current) to it in one rename, so a worktree never changes once the link names it. Give the link
(`git:/git/current`): the source watches the directory holding it and reloads when the link flips. A plain
checkout (`git:/srv/fairshare`, updated by `git pull`) is watched like a local folder.

The revision is the commit the link names; its author comes from `git log` of the checkout, and without
git on the machine the commit is the worktree's name (git-sync names worktrees by commit).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from xds_server.sources.config.base import Revision, SourceError, Tracker, watch_filter

CONFIG_SUBDIR = "config"
POLICY_SUBDIR = "policy"
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass
class GitSource:
    checkout_path: Path  # the sidecar's link, or a plain checkout
    kind: str = "git"
    tracker: Tracker = field(default_factory=Tracker)

    @property
    def location(self) -> str:
        return f"git:{self.checkout_path}"

    @property
    def config_dir(self) -> Path:
        return self.checkout_path / CONFIG_SUBDIR

    @property
    def policy_dir(self) -> Path:
        return self.checkout_path / POLICY_SUBDIR

    def checkout(self) -> Revision:
        worktree = os.path.realpath(self.checkout_path)
        if not os.path.isdir(worktree):
            self.tracker.pending = Revision(self.kind, None, f"{self.location} (no checkout yet)")
            raise SourceError(f"{self.location}: no checkout at {worktree} (is the git-sync sidecar running?)")
        commit, author, when = _head(Path(worktree))
        self.tracker.pending = Revision(self.kind, commit, f"{self.location} commit {commit or '?'}", author,
                                        {"worktree": worktree, **({"committed_at": when} if when else {})})
        return self.tracker.pending

    def verify(self, revision: Revision) -> str | None:
        now = os.path.realpath(self.checkout_path)
        if now != revision.detail.get("worktree"):
            return (f"{self.location} moved from commit {revision.id} to {os.path.basename(now)} while it was "
                    "being read; the new commit is loaded next")
        return None

    def settle(self, ok: bool) -> Revision | None:
        return self.tracker.settle(ok)

    async def changes(self, extra: list[Path], stop: asyncio.Event | None) -> AsyncIterator[frozenset[str] | None]:
        if self.checkout_path.is_symlink():
            # The directory holding the link: the flip is a rename there. The sidecar's writes into a new
            # worktree come before the flip and are filtered out, so a half-written commit is never read.
            paths, recursive = [self.checkout_path.parent, *extra], False
            keep: Callable[[Change, str], bool] = watch_filter([self.checkout_path, *extra])
        else:
            paths, recursive, keep = [self.checkout_path, *extra], True, DefaultFilter()  # .git's churn ignored
        async for _ in awatch(*paths, watch_filter=keep, debounce=50, step=25, stop_event=stop, recursive=recursive,
                              ignore_permission_denied=True):
            yield None  # a new commit: anything may differ, and the checkout's paths are the commit's

    def status(self) -> dict[str, object]:
        return self.tracker.status(self.kind, self.location)


def _head(worktree: Path) -> tuple[str | None, str | None, str | None]:
    """(commit, author, commit time) of a checkout. The sidecar may run as another user, whose checkout git
    would refuse as of dubious ownership: the control plane only reads it."""
    try:
        out = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(worktree), "log", "-1", "--format=%H%x00%an <%ae>%x00%cI"],
            capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is not None and out.returncode == 0 and out.stdout.count("\0") == 2:
        commit, author, when = out.stdout.strip().split("\0")
        return commit, author, when
    name = worktree.name
    return (name if _COMMIT.match(name) else None), None, None
