"""One layout measured: a fresh control plane's first load of N tenants (timed), then the Envoys the bench
runs started one at a time, each timed alone from its start until it applied its snapshot (as on a node of
its own), their memory, and one tenant's edit served through the region's entry, repeated."""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.cells_config import DEDICATED, REGION, write_cells_config, write_endpoints
from bench.cells_edit import EDITED, edits_served
from bench.cells_rig import CellsRig, key_of
from bench.cells_runtime import tokens
from bench.synth import tenant_id
from xds_server.auth.keys import SigningKey
from xds_server.cells.keys import FRONT
from xds_server.local.processes import free_ports_in_a_row
from xds_server.snapshot import CLUSTER

progress = functools.partial(report.progress, "cells")
# In `run`: the cell that holds the edited tenant, whichever it is (its Envoy must run for the edit).
EDITED_CELL = "<edited>"


@dataclass(frozen=True)
class Bench:
    root: Path
    key: SigningKey
    runtime_port: int


@dataclass
class Layout:
    """What was measured, and the rig still running (the moves bench goes on from it)."""

    row: dict[str, Any]
    rig: CellsRig
    config_dir: Path
    endpoints_file: Path
    gateway_port: int

    async def close(self) -> None:
        await self.rig.stop()
        shutil.rmtree(self.config_dir, ignore_errors=True)


async def measure(bench: Bench, name: str, tenants: int, shared: int, run: list[str | None], edits: int,
                  size: int = 2500, dedicated: tuple[str, ...] = ()) -> Layout:
    """`run`: the cells whose Envoy runs (None: the region's single Envoy; FRONT: the front tier;
    EDITED_CELL: the edited tenant's)."""
    config_dir = bench.root / f"config-{name}"
    gateway_port = free_ports_in_a_row(2 + shared + len(dedicated))
    progress(f"{name}: writing {tenants:,} tenants ({shared} shared cells)")
    write_cells_config(config_dir, tenants, gateway_port, shared, size=size)
    endpoints = config_dir.parent / f"endpoints-{name}.yaml"
    write_endpoints(endpoints, bench.runtime_port, gateway_port, shared, dedicated or (DEDICATED,))
    # The kernel writes the bench's own files back to disk: done before the first load is timed, not during it.
    os.sync()
    rig = CellsRig(bench.root, endpoints, bench.key)
    layout = Layout({}, rig, config_dir, endpoints, gateway_port)
    try:
        progress(f"{name}: first load (load + policy + compile + publish)")
        build_s = await rig.start(config_dir, [])
        assert rig.cp is not None and rig.cp.config is not None
        edited = rig.cp.config.cells.get(REGION, {}).get(tenant_id(EDITED))
        run = list(dict.fromkeys(edited if c == EDITED_CELL else c for c in run))
        progress(f"{name}: published in {build_s:.2f}s; starting {len(run)} Envoy(s), one at a time")
        applied: dict[str, float] = {}
        for cell in run:
            await rig.quiet()
            applied[key_of(cell)] = await rig.start_envoy(cell)
            progress(f"{name}: {key_of(cell)} applied {applied[key_of(cell)]:.2f}s after its start")
        envoys: dict[str, dict[str, Any]] = {}
        for cell in run:
            snapshot = rig.store.get(key_of(cell))
            assert snapshot is not None and rig.cp is not None and rig.cp.config is not None
            memory = await rig.memory(cell)
            envoys[key_of(cell)] = {
                "cell": cell, "applied_s": applied[key_of(cell)], "tenants": _tenants_in(rig, cell),
                "resources": snapshot.count(), "clusters": len(snapshot.of_type(CLUSTER)),
                "snapshot_bytes": snapshot.total_bytes(),
                "alloc_bytes": memory.allocated, "rss_bytes": memory.rss,
            }
            progress(f"{name}: {key_of(cell)}: {envoys[key_of(cell)]['tenants']:,} tenants, "
                     f"{memory.allocated / 1e6:.0f} MB allocated")
        layout.row = {"name": name, "tenants": tenants, "shared_cells": shared, "cell_size": size, "build_s": build_s,
                      "snapshots": len(rig.store.regions()), "envoys": envoys}
        if edits:
            assert rig.cp is not None and rig.cp.config is not None
            token = tokens(bench.key, rig.cp.config.platform.auth, [tenant_id(EDITED)])[tenant_id(EDITED)]
            progress(f"{name}: {edits} edits of one tenant's split, each until served")
            layout.row["edit"] = await edits_served(rig, config_dir, f"http://127.0.0.1:{gateway_port}", token, edits)
            progress(f"{name}: edit served p50 {layout.row['edit']['p50']['served_s']:.2f}s")
        return layout
    except BaseException:
        await layout.close()
        raise


def _tenants_in(rig: CellsRig, cell: str | None) -> int:
    assert rig.cp is not None and rig.cp.config is not None
    cfg = rig.cp.config
    if cell is None:
        return sum(1 for t in cfg.tenants.values() if REGION in t.routes)
    if cell == FRONT:
        return len(rig.front_table())
    return sum(1 for c in cfg.cells[REGION].values() if c == cell)
