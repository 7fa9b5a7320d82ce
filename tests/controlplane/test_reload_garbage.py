"""A large reload, and every incremental one, is frozen without a cycle collection (controlplane/service.py
`_gc_paused`): that is only sound while a build leaves no reference cycle behind, which this checks on a full
load and compile, and on incremental ones (an edit, a tenant added, one removed, an edit back)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import yaml

from bench.synth import tenant_id, tenant_spec, write_config
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory
from xds_server.config import ConfigError, PlatformConfig, load_config
from xds_server.config.loader import TenantFileCache


def build(root: Path) -> None:
    cfg = load_config(root, TenantFileCache())
    Compiler().compile(CompileInputs(cfg, EndpointDirectory(), "{}", "127.0.0.1"))


def test_a_full_load_and_compile_leave_no_reference_cycle(tmp_path: Path) -> None:
    root = write_config(tmp_path / "config", 60)
    build(root)  # the first in a process creates its imports' classes and functions, some of them cyclic
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        build(root)
        gc.collect()
        garbage = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    assert garbage == []


def garbage_of(step: Callable[[], None]) -> list[str]:
    """The types of whatever `step` left unreachable in a cycle (the collector off meanwhile)."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        step()
        gc.collect()
        return [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


def test_incremental_reloads_leave_no_reference_cycle(tmp_path: Path) -> None:
    root = write_config(tmp_path / "config", 60)
    cache, compiler = TenantFileCache(), Compiler()
    state: dict[str, PlatformConfig] = {"cfg": load_config(root, cache)}
    compiler.compile(CompileInputs(state["cfg"], EndpointDirectory(), "{}", "127.0.0.1"))

    def reload(path: Path) -> None:
        try:
            cfg = load_config(root, cache, changed=[path])
        except ConfigError:
            return
        last = cache.last
        assert last is not None and last.changes is not None  # incremental indeed
        compiler.compile(CompileInputs(cfg, EndpointDirectory(), "{}", "127.0.0.1", changes=last.changes))
        state["cfg"] = cfg

    tenants = root / "tenants"

    def write(i: int, spec: dict[str, object]) -> Path:
        path = tenants / f"{tenant_id(i)}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    edits: list[Callable[[], Path]] = [
        lambda: write(3, {**tenant_spec(3), "tier": "enterprise"}),
        lambda: write(600, tenant_spec(600)),  # added
        lambda: (tenants / f"{tenant_id(7)}.yaml").unlink() or tenants / f"{tenant_id(7)}.yaml",  # removed
        lambda: write(3, tenant_spec(3)),
    ]
    for edit in edits:
        path = edit()
        assert garbage_of(lambda p=path: reload(p)) == []
