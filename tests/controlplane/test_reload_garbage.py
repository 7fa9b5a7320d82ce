"""A large reload is frozen without a cycle collection (controlplane/service.py `_gc_paused`): that is only
sound while a build leaves no reference cycle behind, which this checks on a full load and compile."""

from __future__ import annotations

import gc
from pathlib import Path

from bench.synth import write_config
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory
from xds_server.config import load_config
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
