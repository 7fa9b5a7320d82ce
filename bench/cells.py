"""Cells at 10,000 tenants (issue 14), against today's single-Envoy layout in the same run:

- 10,000 tenants in one region split into 4 cells of 2,500 against the same tenants in one cell: time to
  applied, the largest Envoy's memory, one tenant's edit served (p50 over 20 edits);
- moving 1% of them to a new dedicated cell under load through the front tier: failed requests, the time
  until every moved tenant is served by its new cell and its old cell dropped it.

    python -m bench.cells [--tenants 10000] [--cells 4] [--edits 20] [--pins 100]

Writes bench/results/cells.{json,md} and cells_memory.png. `make bench-controlplane` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.cells_measure import Bench, measure, progress
from bench.cells_moves import move_under_load
from bench.cells_report import plot_memory, render_10k, summarise_10k
from bench.cells_runtime import runtime
from bench.report import results_dir, write_results
from xds_server.auth.keys import SigningKey
from xds_server.cells.keys import FRONT
from xds_server.local.processes import free_port


async def run(tenants: int, shared: int, size: int, edits: int, pins: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fairshare-bench-cells-"))
    bench = Bench(root, SigningKey.load_or_create(root / "state"), free_port())
    try:
        with runtime(root, bench.runtime_port):
            progress(f"baseline: {tenants:,} tenants in one cell (today's single-Envoy layout)")
            single = await measure(bench, f"single-{tenants}", tenants, 1, [None], edits, size=size)
            await single.close()
            progress(f"{tenants:,} tenants in {shared} cells: every cell's Envoy and the front")
            split = await measure(bench, f"cells-{tenants}", tenants, shared,
                                  [*(f"c{k}" for k in range(shared)), FRONT], edits, size=size)
            try:
                moves = await move_under_load(split, bench, pins) if pins else None
            finally:
                await split.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return summarise_10k(single.row, split.row, moves)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--cells", type=int, default=4, help="shared cells the tenants are split into")
    parser.add_argument("--size", type=int, default=None, help="platform.cells.size (default tenants / cells)")
    parser.add_argument("--edits", type=int, default=20, help="edits of one tenant; the served time is their p50")
    parser.add_argument("--pins", type=int, default=100, help="tenants moved to a new dedicated cell (0: none)")
    args = parser.parse_args(argv)
    size = args.size or -(-args.tenants // args.cells)
    results = asyncio.run(run(args.tenants, args.cells, size, args.edits, args.pins))
    md = render_10k(results)
    path = write_results("cells", results, md)
    plot_memory(results, results_dir() / "cells_memory.png")
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
