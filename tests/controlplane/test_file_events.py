"""The local folder's watcher (xds_server/sources/config/file_events.py): a set of changes goes on once its
files are closed, never while one is half-written; folders that appear are watched with their files; and
the sets together name every file that changed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from xds_server.sources.config.file_events import settled_changes

# Long enough that a set handed on early can only be the watcher's mistake, not its time limit.
HELD = 60.0


async def next_set(changes: AsyncIterator[frozenset[str] | None], timeout: float = 10.0) -> frozenset[str] | None:
    return await asyncio.wait_for(anext(changes), timeout)


async def started(roots: list[Path], stop: asyncio.Event) -> AsyncIterator[frozenset[str] | None]:
    changes = settled_changes(roots, stop, open_wait_s=HELD, max_wait_s=HELD)
    # The generator adds its watches when first run: start it, let it block, then change files.
    first = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0.05)

    async def chained() -> AsyncIterator[frozenset[str] | None]:
        yield await first
        async for item in changes:
            yield item

    return chained()


def test_a_file_half_written_holds_its_change_until_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        changes = await started([tmp_path], stop)
        path = tmp_path / "acme.yaml"
        pending = asyncio.ensure_future(next_set(changes))
        with path.open("w") as f:
            f.write("id: acme\n")
            f.flush()
            await asyncio.sleep(0.3)  # a writer that pauses (watchfiles would have handed it on by now)
            assert not pending.done()
            f.write("tier: pro\n")
        assert await pending == {str(path)}
        stop.set()

    asyncio.run(scenario())


def test_an_editors_swap_file_kept_open_holds_nothing_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        changes = await started([tmp_path], stop)
        with (tmp_path / ".acme.yaml.swp").open("w") as swap:
            swap.write("vim keeps this open")
            swap.flush()
            (tmp_path / "acme.yaml").write_text("id: acme\n")
            got = await next_set(changes)
            assert got is not None and str(tmp_path / "acme.yaml") in got
        stop.set()

    asyncio.run(scenario())


def test_every_change_is_named_renames_deletions_and_new_folders(tmp_path: Path) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        (tmp_path / "tenants").mkdir()
        old = tmp_path / "tenants" / "old.yaml"
        old.write_text("id: old\n")
        changes = await started([tmp_path], stop)
        expected = set()
        for i in range(50):  # a burst, as `cp -r` writes it
            path = tmp_path / "tenants" / f"t{i:02d}.yaml"
            path.write_text(f"id: t{i:02d}\n")
            expected.add(str(path))
        staged = tmp_path / "tenants" / ".acme.yaml.tmp"
        staged.write_text("id: acme\n")
        os.replace(staged, tmp_path / "tenants" / "acme.yaml")  # an atomic save
        old.unlink()
        expected |= {str(staged), str(tmp_path / "tenants" / "acme.yaml"), str(old)}
        # A folder that appears with a file already in it (moved in whole): both are named, and it is watched.
        outside = tmp_path.parent / f"{tmp_path.name}-staging"
        (outside / "models").mkdir(parents=True)
        (outside / "models" / "m.yaml").write_text("name: m\n")
        os.replace(outside / "models", tmp_path / "models")
        expected |= {str(tmp_path / "models"), str(tmp_path / "models" / "m.yaml")}
        seen: set[str] = set()
        while not expected <= seen:
            got = await next_set(changes)
            assert got is not None
            seen |= got
        (tmp_path / "models" / "n.yaml").write_text("name: n\n")
        while str(tmp_path / "models" / "n.yaml") not in seen:
            got = await next_set(changes)
            assert got is not None
            seen |= got
        stop.set()

    asyncio.run(scenario())


def test_stop_ends_the_watch(tmp_path: Path) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        changes = settled_changes([tmp_path], stop)
        ended = asyncio.ensure_future(anext(changes, "ended"))
        await asyncio.sleep(0.05)
        stop.set()
        assert await asyncio.wait_for(ended, 5) == "ended"

    asyncio.run(scenario())


def test_a_root_folder_replaced_whole_is_watched_again(tmp_path: Path) -> None:
    """`rm -rf policy && cp -r new policy`, or `mv config.new config`: the folder the watches were on is gone,
    and edits in the new one were neither applied nor refused. Each step reads everything (None); the
    new folder's edits are named again; the old folder, moved away, is no longer watched."""
    async def scenario() -> None:
        stop = asyncio.Event()
        root = tmp_path / "policy"
        root.mkdir()
        (root / "a.rego").write_text("package a\n")
        changes = await started([root], stop)

        async def until_read_everything() -> None:
            while await next_set(changes) is not None:
                pass

        for f in root.iterdir():
            f.unlink()
        root.rmdir()
        await until_read_everything()
        root.mkdir()
        (root / "a.rego").write_text("package a\n")
        await until_read_everything()
        (root / "b.rego").write_text("package b\n")
        assert str(root / "b.rego") in (await next_set(changes) or set())

        staged = tmp_path / "policy.new"
        staged.mkdir()
        (staged / "c.rego").write_text("package c\n")
        os.replace(root, tmp_path / "policy.old")
        await until_read_everything()
        os.replace(staged, root)
        await until_read_everything()
        (tmp_path / "policy.old" / "stale.rego").write_text("package stale\n")  # no longer watched
        (root / "d.rego").write_text("package d\n")
        got = await next_set(changes)
        assert got is not None and str(root / "d.rego") in got
        assert not any("stale" in p for p in got)
        stop.set()

    asyncio.run(scenario())
