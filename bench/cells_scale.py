"""Cells at 100,000 tenants (issue 14), against baselines measured in the same run:

- 100,000 tenants in 40 cells: the first load (load + policy + compile + publish) against 10,000 tenants in
  4 cells (the median of 3 loads each); each cell's Envoy against a plain single-cell region of 2,500
  tenants; the front tier's Envoy (its whole tenant -> cell table); one tenant's edit served against the
  same edit at 10,000.

Two cells' Envoys (the edited tenant's and one more) and the front run at 100,000; the other 38 cells hold
the same number of tenants with the same shapes, so their Envoys cost the same (each cell's snapshot size
is listed for all of them).

    python -m bench.cells_scale [--tenants 100000] [--cells 40] [--edits 20] [--loads 3]

Writes bench/results/cells_scale.{json,md} and cells_scale_memory.png. `make bench-cells` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.cells_measure import EDITED_CELL, Bench, Layout, measure, progress
from bench.cells_report import plot_memory
from bench.cells_runtime import runtime
from bench.cells_scale_report import render_scale, summarise_scale
from bench.cold_load import first_load
from bench.report import results_dir, write_results
from xds_server.auth.keys import SigningKey
from xds_server.cells.keys import FRONT
from xds_server.local.processes import free_port

CELL_SIZE = 2500
# First loads of each of the 10,000- and 100,000-tenant layouts; their medians are compared.
LOADS = 3


async def run(tenants: int, shared: int, edits: int, loads: int = LOADS) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fairshare-bench-cells-scale-"))
    bench = Bench(root, SigningKey.load_or_create(root / "state"), free_port())
    small = tenants // 10
    try:
        with runtime(root, bench.runtime_port):
            progress(f"baseline: a plain single-cell region of {CELL_SIZE:,} tenants")
            one = await measure(bench, f"single-{CELL_SIZE}", CELL_SIZE, 1, [None], 0, size=CELL_SIZE)
            await one.close()
            progress(f"baseline: {small:,} tenants in {shared // 10} cells")
            ten = await measure(bench, f"cells-{small}", small, shared // 10, [EDITED_CELL, FRONT], edits,
                                size=CELL_SIZE)
            await more_loads(bench, ten, loads)
            await ten.close()
            progress(f"{tenants:,} tenants in {shared} cells")
            big = await measure(bench, f"cells-{tenants}", tenants, shared, [EDITED_CELL, "c0", "c1", FRONT], edits,
                                size=CELL_SIZE)
            big.row["cell_snapshots"] = cell_snapshots(big)
            await more_loads(bench, big, loads)
            await big.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return summarise_scale(one.row, ten.row, big.row)


async def more_loads(bench: Bench, layout: Layout, loads: int) -> None:
    """`loads` first loads in all of the layout's files, the rig's and fresh control planes' on the same
    files, the rig stopped: one load of 100,000 tenants moves by 10-20% from one run to the next here, more
    than the target's margin, so the growth is taken between medians."""
    samples = [layout.row["build_s"]]
    # The rig's control plane, Envoys and snapshots gone first: the other loads run in the process as the
    # rig's did, not beside a second config of the same size.
    await layout.rig.stop()
    for k in range(loads - 1):
        gc.collect()  # the last fresh control plane's config, gone before the next one is built
        samples.append(first_load(layout.config_dir, layout.endpoints_file, bench.key)["total_s"])
        progress(f"{layout.row['name']}: first load {k + 2}/{loads}: {samples[-1]:.2f}s")
    layout.row["build_samples_s"] = samples


def cell_snapshots(layout: Any) -> dict[str, dict[str, int]]:
    """Every cell's snapshot (resources, bytes, tenants), measured Envoy or not: they are alike."""
    rig = layout.rig
    out: dict[str, dict[str, int]] = {}
    placed = rig.cp.config.cells["us-east-1"]
    counts: dict[str, int] = {}
    for cell in placed.values():
        counts[cell] = counts.get(cell, 0) + 1
    for key in rig.store.regions():
        if key.startswith("us-east-1/") and not key.endswith("/front"):
            snap = rig.store.get(key)
            out[key] = {"tenants": counts.get(key.split("/")[1], 0), "resources": snap.count(),
                        "bytes": snap.total_bytes()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--cells", type=int, default=40, help="shared cells (the baseline has a tenth of both)")
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--loads", type=int, default=LOADS, help="first loads of each layout (medians compared)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.tenants, args.cells, args.edits, args.loads))
    md = render_scale(results)
    path = write_results("cells_scale", results, md)
    plot_memory(results, results_dir() / "cells_scale_memory.png")
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
