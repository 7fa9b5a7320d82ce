"""Incremental reloads (xds_server/config/incremental.py): told which tenant files changed, the loader reads and
decides only those, and the compiler looks only at those; what comes out is always what a fresh load and a
fresh compile of the same folder give, whatever the edit: a random walk of edits, adds, removals, offboarding,
pins to another cell, broken files and their fixes, and changes outside tenants/ (which take the full load)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.cells_config import REGION, example_in_cells
from bench.synth import REPO_CONFIG, tenant_id, tenant_spec
from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, EndpointDirectory, shaping
from xds_server.config import ConfigError, PlatformConfig, load_config
from xds_server.config.loader import TenantFileCache
from xds_server.controlplane.service import ControlPlane
from xds_server.policy import resolve
from xds_server.status_table import render_config
from xds_server.xds.store import SnapshotStore

SYNTHETIC = 40


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """The example config (own models, failover, every tier) and 40 synthetic tenants, us-east-1 in 3 cells
    and a dedicated one."""
    root = example_in_cells(tmp_path / "config", 30, 3, ("d0",))
    for i in range(SYNTHETIC):
        write(root, i, tenant_spec(i))
    return root


def write(root: Path, i: int, spec: dict[str, Any]) -> Path:
    path = root / "tenants" / f"{tenant_id(i)}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def edit_own_model(root: Path, rng: random.Random) -> None:
    """acme's own model: its canary split (a version at 0% included), its pool, or the model gone (and back);
    or a failover chain."""
    path = root / "tenants" / "acme.yaml"
    spec = yaml.safe_load(path.read_text())
    own = yaml.safe_load((REPO_CONFIG / "tenants" / "acme.yaml").read_text())["own_models"]
    choice = rng.choice(["split", "gone", "failover"])
    if choice == "gone" and "own_models" in spec:
        del spec["own_models"]
    else:
        spec["own_models"] = own
        weight = rng.choice([0, 10, 50])
        spec["own_models"]["ticket-router"]["split"] = {"1": 100 - weight, "2": weight}
        spec["own_models"]["ticket-router"]["pool"] = rng.choice(["cpu-general", "gpu-small"])
    if choice == "failover":
        spec["regions"].pop("failover", None) if "failover" in spec["regions"] else spec["regions"].update(
            failover=["eu-west-1"])
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def compiled(compiler: Compiler, cfg: PlatformConfig, cache: TenantFileCache | None = None) -> CompiledPlatform:
    last = cache.last if cache is not None else None
    changes = last.changes if last is not None and last.config is cfg else None
    return compiler.compile(CompileInputs(cfg, EndpointDirectory(), "{}", "127.0.0.1", changes=changes))


def fresh(root: Path) -> tuple[PlatformConfig, CompiledPlatform] | str:
    try:
        cfg = load_config(root)
    except ConfigError as err:
        return err.render()
    return cfg, compiled(Compiler(), cfg)


def assert_same(got: PlatformConfig, out: CompiledPlatform, want: PlatformConfig, ref: CompiledPlatform,
                step: str) -> None:
    assert list(got.tenants) == list(want.tenants), step  # the same tenants in the same (file-name) order
    assert got.tenants == want.tenants, step
    assert got.offboarded == want.offboarded, step
    assert got.cells == want.cells, step
    assert {k: s.version for k, s in out.snapshots.items()} == {k: s.version for k, s in ref.snapshots.items()}, step
    assert out.ratelimits.version == ref.ratelimits.version, step
    assert out.version == ref.version, step


def test_a_random_walk_of_edits_loads_and_compiles_as_a_fresh_load_does(cfg_dir: Path) -> None:
    _walk(cfg_dir, random.Random(14))


def test_the_walk_near_capacity_places_as_a_fresh_load_does(tmp_path: Path) -> None:
    """Cells of 16 for 43-53 tenants: the hash over-fills some, and each arrival, departure or pin is placed
    from the last placement and its ledger (cells/assign.py place_changed), overflow included."""
    root = example_in_cells(tmp_path / "config", 16, 3, ("d0",))
    for i in range(SYNTHETIC):
        write(root, i, tenant_spec(i))
    overflowing = _walk(root, random.Random(3))
    assert overflowing >= 10, overflowing


def _walk(cfg_dir: Path, rng: random.Random) -> int:
    """Random edits, each loaded incrementally and compared with a fresh load; the steps whose placement had
    tenants overflowing their hash's cell."""
    overflowing = 0
    cache, compiler = TenantFileCache(), Compiler()
    last = load_config(cfg_dir, cache)
    compiled(compiler, last, cache)
    present = set(range(SYNTHETIC))
    incremental = 0
    for step in range(70):
        i = rng.randrange(SYNTHETIC + 10)
        kind = rng.choice(["split", "split", "quota", "tier", "add-remove", "offboard", "pin", "broken", "noise",
                           "own-model", "own-model"])
        if kind == "own-model":
            edit_own_model(cfg_dir, rng)
            # The reference compiles below scan their own configs; a control plane alone last scanned its own.
            shaping.with_own_models(last)
            got_cfg = load_config(cfg_dir, cache, changed=[cfg_dir / "tenants" / "acme.yaml"])
            got = compiled(compiler, got_cfg, cache)
            # What the compile asked of the tenants with own models and failover: this config's objects.
            for kept, has in ((shaping.with_own_models(got_cfg), lambda t: any(t.own_routes.values())),
                              (shaping.with_failover(got_cfg), lambda t: bool(t.spec.regions.failover))):
                scanned = [t for t in got_cfg.tenants.values() if has(t)]
                assert len(kept) == len(scanned) and all(a is b for a, b in zip(kept, scanned, strict=True))
            want = fresh(cfg_dir)
            assert not isinstance(want, str)
            assert_same(got_cfg, got, *want, f"step {step} ({kind})")
            last = got_cfg
            continue
        spec = tenant_spec(i, (rng.choice([0, 50, 90, 100]), 0))
        spec["models"] = {"classifier": {"split": {"v1": 100}}} if i % 4 == 0 else {
            "classifier": {"split": {"v1": (w := rng.choice([0, 50, 90, 100])), "v2": 100 - w}}}
        changed: list[Path] = []
        if kind == "quota":
            spec["quotas"] = {"gpus": 0, "requests_per_second": rng.choice([5, 10, 50])}
        elif kind == "tier":
            spec["tier"] = rng.choice(["free", "pro", "enterprise"])
        elif kind == "offboard":
            spec["offboard"] = rng.random() < 0.7
        elif kind == "pin" and (cell := rng.choice(["d0", "c1", None])) is not None:
            spec["cell"] = cell
        path = cfg_dir / "tenants" / f"{tenant_id(i)}.yaml"
        if kind == "add-remove" and i in present:
            path.unlink()
            present.discard(i)
        elif kind == "broken":
            path.write_text("id: [unclosed\n")
            present.add(i)
        elif kind == "noise":
            (cfg_dir / "tenants" / ".notes.swp").write_text(str(step))
            changed.append(cfg_dir / "tenants" / ".notes.swp")
        else:
            write(cfg_dir, i, spec)
            present.add(i)
        changed.append(path)
        want = fresh(cfg_dir)
        try:
            got_cfg = load_config(cfg_dir, cache, changed=changed)
        except ConfigError as err:
            assert isinstance(want, str), f"step {step} ({kind}): refused, a fresh load is not: {err.render()}"
            assert err.render() == want, f"step {step} ({kind})"
            write(cfg_dir, i, tenant_spec(i))  # fixed again
            present.add(i)
            got_cfg = load_config(cfg_dir, cache, changed=[path])
            want = fresh(cfg_dir)
        assert not isinstance(want, str), f"step {step} ({kind}): a fresh load refused what the incremental took"
        got = compiled(compiler, got_cfg, cache)
        assert_same(got_cfg, got, *want, f"step {step} ({kind})")
        last = got_cfg
        incremental += cache.last is not None and cache.last.changes is not None
        memo = cache.placement_memo
        overflowing += memo is not None and bool(memo[2].ledgers[REGION].overflow)
    assert incremental >= 40  # most steps took the incremental path, not the full load after it
    return overflowing


def test_a_change_outside_tenants_takes_the_full_load(cfg_dir: Path) -> None:
    cache, compiler = TenantFileCache(), Compiler()
    compiled(compiler, load_config(cfg_dir, cache), cache)
    tiers = yaml.safe_load((cfg_dir / "tiers.yaml").read_text())
    tiers["tiers"]["free"]["weight"] = tiers["tiers"]["free"]["weight"] + 1
    (cfg_dir / "tiers.yaml").write_text(yaml.safe_dump(tiers, sort_keys=False))
    cfg = load_config(cfg_dir, cache, changed=[cfg_dir / "tiers.yaml"])
    assert cache.last is not None and cache.last.changes is None  # the full load ran
    want = fresh(cfg_dir)
    assert not isinstance(want, str)
    assert_same(cfg, compiled(compiler, cfg, cache), *want, "tiers edit")
    assert cfg.tiers["free"].weight == tiers["tiers"]["free"]["weight"]


def test_a_tenant_edit_reads_one_file_and_rebuilds_only_its_cell(cfg_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache, compiler = TenantFileCache(), Compiler()
    before = load_config(cfg_dir, cache)
    first = compiled(compiler, before, cache)
    edited = tenant_id(1)
    write(cfg_dir, 1, tenant_spec(1, (50, 50)))
    parsed = {p: e[1] for p, e in cache.entries.items()}
    full_resolves: list[int] = []
    whole = resolve.resolve_tenants

    def counted(*args: Any, **kwargs: Any) -> Any:
        full_resolves.append(1)
        return whole(*args, **kwargs)

    monkeypatch.setattr(resolve, "resolve_tenants", counted)
    after = load_config(cfg_dir, cache, changed=[cfg_dir / "tenants" / f"{edited}.yaml"])
    assert not full_resolves  # the policy layer answered for the one tenant (resolve_changed), not all
    assert cache.last is not None and cache.last.changes is not None
    assert cache.last.changes.since is before and cache.last.changes.tenants == {edited}
    # Every other tenant is the very object the load before decided, and its file was not read again.
    assert all(after.tenants[t] is before.tenants[t] for t in before.tenants if t != edited)
    assert [p for p, e in cache.entries.items() if parsed.get(p) is not e[1]] == [
        str(cfg_dir / "tenants" / f"{edited}.yaml")]
    second = compiled(compiler, after, cache)
    cell = after.cells[REGION][edited]
    moved = {k for k, s in second.snapshots.items() if first.snapshots[k] is not s}
    assert moved == {f"{REGION}/{cell}"}


def test_a_change_naming_no_tenant_file_keeps_the_next_edit_incremental(cfg_dir: Path) -> None:
    """An editor's scratch file beside the tenants (vim's .t00001.yaml.swp) changes nothing: the same config,
    and the next edit still reads one file (the last load's state, updated in place, is kept)."""
    cache = TenantFileCache()
    before = load_config(cfg_dir, cache)
    swap = cfg_dir / "tenants" / f".{tenant_id(1)}.yaml.swp"
    swap.write_bytes(b"\0vim")
    assert load_config(cfg_dir, cache, changed=[swap]) is before
    write(cfg_dir, 1, tenant_spec(1, (50, 50)))
    after = load_config(cfg_dir, cache, changed=[cfg_dir / "tenants" / f"{tenant_id(1)}.yaml"])
    assert cache.last is not None and cache.last.changes is not None and cache.last.changes.since is before
    assert after.tenants[tenant_id(1)] is not before.tenants[tenant_id(1)]


def test_an_incremental_load_that_fails_leaves_nothing_half_updated(cfg_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug half-way through an incremental load (here, in the policy layer) must not leave the next load
    building on a tenant table that says the edit happened: the next load is a full one, and right."""
    cache = TenantFileCache()
    load_config(cfg_dir, cache)
    write(cfg_dir, 1, tenant_spec(1, (50, 50)))
    changed = [cfg_dir / "tenants" / f"{tenant_id(1)}.yaml"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patched:
        patched.setattr(resolve, "resolve_changed", broken)
        with pytest.raises(RuntimeError):
            load_config(cfg_dir, cache, changed=changed)
    assert cache.last is None  # nothing to build on: the next load reads everything
    write(cfg_dir, 2, tenant_spec(2, (50, 50)))
    cfg = load_config(cfg_dir, cache, changed=[cfg_dir / "tenants" / f"{tenant_id(2)}.yaml"])
    assert cache.last is not None and cache.last.changes is None  # the full load ran
    want = fresh(cfg_dir)
    assert not isinstance(want, str)
    assert_same(cfg, compiled(Compiler(), cfg, cache), *want, "after a failed incremental load")


def test_the_control_plane_reloads_incrementally_from_the_watchers_events(cfg_dir: Path) -> None:
    async def scenario() -> None:
        cp = ControlPlane(cfg_dir, None, "{}", SnapshotStore(), "127.0.0.1")
        assert cp.reload().ok
        stop = asyncio.Event()
        watch = asyncio.create_task(cp.watch(stop))
        await asyncio.sleep(0.5)  # armed

        async def changed_to(check: Any) -> None:
            for _ in range(200):
                await asyncio.sleep(0.05)
                if cp.config is not None and check(cp.config):
                    return
            raise AssertionError("the edit was not applied")

        try:
            write(cfg_dir, 1, tenant_spec(1, (0, 100)))
            await changed_to(lambda c: c.tenants[tenant_id(1)].spec.models["classifier"].split == {"v1": 0, "v2": 100})
            assert cp.last is not None and cp.last.incremental
            assert cp.status()["last_reload"]["incremental"] is True  # type: ignore[index]
            assert "last reload ok" in (line := render_config(cp.status(), time.time())) and "(incremental, " in line
            tiers = yaml.safe_load((cfg_dir / "tiers.yaml").read_text())
            tiers["tiers"]["free"]["weight"] += 1
            (cfg_dir / "tiers.yaml").write_text(yaml.safe_dump(tiers, sort_keys=False))
            await changed_to(lambda c: c.tiers["free"].weight == tiers["tiers"]["free"]["weight"])
            assert not cp.last.incremental and "(full, " in render_config(cp.status(), time.time())
            # The safety net for a lost event: past `full_reload_seconds` since the last full reload, the next
            # change reads everything even when only a tenant file was named.
            cp.full_reload_seconds = 0.0
            write(cfg_dir, 2, tenant_spec(2, (50, 50)))
            await changed_to(lambda c: c.tenants[tenant_id(2)].spec.models["classifier"].split == {"v1": 50, "v2": 50})
            assert not cp.last.incremental
        finally:
            stop.set()
            await asyncio.wait_for(watch, 10)
        want = fresh(cfg_dir)
        assert not isinstance(want, str) and cp.config is not None and cp.config.tenants == want[0].tenants

    asyncio.run(scenario())
