"""A cold load shared among worker processes (xds_server/workers.py: tenant files read, tenants compiled) gives
what one process gives: the same tenants, cells and snapshots byte for byte, the same problems for broken
files; and when a worker dies, the load still succeeds, done in the control plane's own process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.cells_config import example_in_cells
from bench.synth import tenant_id, tenant_spec
from xds_server import workers
from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, EndpointDirectory, parallel
from xds_server.config import ConfigError, PlatformConfig, load_config, loader
from xds_server.config.loader import TenantFileCache

SYNTHETIC = 120


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """The example config and 120 synthetic tenants, us-east-1 in 3 cells of 50 and a dedicated one."""
    root = example_in_cells(tmp_path / "config", 50, 3, ("d0",))
    for i in range(SYNTHETIC):
        spec = tenant_spec(i)
        if i % 40 == 7:
            spec["cell"] = "d0"
        (root / "tenants" / f"{tenant_id(i)}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Workers for as few as 10 items on 3 CPUs; each fork_map call recorded as (what, whether it answered)."""
    monkeypatch.setattr(workers, "MIN_PER_WORKER", 10)
    monkeypatch.setattr(workers, "usable_cpus", lambda: 3)
    calls: list[tuple[str, bool]] = []

    def spy(fn: Callable[..., Any], context: Any, items: Any, n: int, what: str) -> Any:
        out = workers.fork_map(fn, context, items, n, what)
        calls.append((what, out is not None))
        return out

    monkeypatch.setattr(loader, "fork_map", spy)
    monkeypatch.setattr(parallel, "fork_map", spy)
    return calls


def load_and_compile(root: Path) -> tuple[PlatformConfig, CompiledPlatform]:
    cfg = load_config(root, TenantFileCache())
    return cfg, Compiler().compile(CompileInputs(cfg, EndpointDirectory(), "{}", "127.0.0.1"))


def one_process(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[PlatformConfig, CompiledPlatform]:
    with monkeypatch.context() as m:
        m.setattr(workers, "usable_cpus", lambda: 1)
        return load_and_compile(root)


def resources(out: CompiledPlatform) -> dict[str, dict[str, dict[str, bytes]]]:
    return {key: {t: {name: r.packed.SerializeToString() for name, r in by_name.items()}
                  for t, by_name in snap.resources.items()}
            for key, snap in out.snapshots.items()}


def test_a_cold_load_in_workers_is_the_same_config_and_the_same_snapshots(
        cfg_dir: Path, forks: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch) -> None:
    want_cfg, want = one_process(cfg_dir, monkeypatch)
    assert forks == []
    got_cfg, got = load_and_compile(cfg_dir)
    assert forks == [("reading tenant files", True), ("compiling tenants", True)]
    assert list(got_cfg.tenants) == list(want_cfg.tenants)
    assert got_cfg.tenants == want_cfg.tenants
    assert got_cfg.cells == want_cfg.cells
    assert got.version == want.version
    assert {k: s.version for k, s in got.snapshots.items()} == {k: s.version for k, s in want.snapshots.items()}
    assert resources(got) == resources(want)  # byte for byte, not only the digests
    assert got.ratelimits.version == want.ratelimits.version


def test_broken_files_read_in_workers_report_the_same_problems(
        cfg_dir: Path, forks: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch) -> None:
    tenants = cfg_dir / "tenants"
    (tenants / f"{tenant_id(3)}.yaml").write_text("id: [unclosed\n")
    (tenants / f"{tenant_id(50)}.yaml").write_bytes(b"id: t\xff\n")
    spec = tenant_spec(90)
    spec["quotas"] = {"gpus": "many"}
    (tenants / f"{tenant_id(90)}.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as serial:
        one_process(cfg_dir, monkeypatch)
    with pytest.raises(ConfigError) as forked:
        load_and_compile(cfg_dir)
    assert forks == [("reading tenant files", True)]
    assert forked.value.render() == serial.value.render()
    rendered = forked.value.render()
    assert all(tenant_id(i) in rendered for i in (3, 50, 90))


_HERE = os.getpid()
_READ, _COMPILE = loader._read_tenant_files, parallel._compile_part


def _read_or_die(context: Any, part: Any) -> Any:
    if os.getpid() != _HERE:
        os._exit(9)  # a worker, as if killed for memory
    return _READ(context, part)


def _compile_or_die(context: Any, part: Any) -> Any:
    if os.getpid() != _HERE:
        os._exit(9)
    return _COMPILE(context, part)


def test_a_worker_that_dies_leaves_the_load_to_this_process(
        cfg_dir: Path, forks: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch) -> None:
    want_cfg, want = one_process(cfg_dir, monkeypatch)
    monkeypatch.setattr(loader, "_read_tenant_files", _read_or_die)
    monkeypatch.setattr(parallel, "_compile_part", _compile_or_die)
    got_cfg, got = load_and_compile(cfg_dir)
    assert forks == [("reading tenant files", False), ("compiling tenants", False)]
    assert got_cfg.tenants == want_cfg.tenants
    assert got.version == want.version
