"""A control plane's cold load of 10,000 tenants (a first start, a failover to another replica): shared among
worker processes (xds_server/workers.py, the default) against one process (`controlplane.workers: 1`), in
the same run, each a fresh ControlPlane on the same files, alternating, median of a few. And the tenant
files' YAML read by xds_server/config/yaml_data.py against PyYAML's own loader (libyaml's parser both).

    python -m bench.cold_load [--tenants 10000] [--cells 4] [--runs 3]

Writes bench/results/cold_load.{json,md}. `make bench-controlplane` runs it.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import report
from bench.cells_config import write_cells_config, write_endpoints
from xds_server.auth.keys import SigningKey
from xds_server.compiler import Compiler
from xds_server.config.yaml_data import Loader, load_yaml
from xds_server.controlplane.service import ControlPlane
from xds_server.workers import usable_cpus, worker_count
from xds_server.xds.store import SnapshotStore

progress = functools.partial(report.progress, "cold_load")


def _with_workers(config_dir: Path, workers: int | None) -> None:
    path = config_dir / "platform.yaml"
    data = yaml.safe_load(path.read_text())
    controlplane = data.setdefault("controlplane", {})
    if workers is None:
        controlplane.pop("workers", None)
    else:
        controlplane["workers"] = workers
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def first_load(config_dir: Path, endpoints: Path, key: SigningKey) -> dict[str, float]:
    """A fresh ControlPlane's first load of `config_dir`, timed: total and parts (load, compile, ...)."""
    cp = ControlPlane(config_dir, endpoints, key.jwks(), SnapshotStore(), "127.0.0.1", validator=None,
                      compiler=Compiler(local_cell_ports=True))
    started = time.perf_counter()
    outcome = cp.reload()
    if not outcome.ok:
        raise RuntimeError(outcome.error)
    return {"total_s": time.perf_counter() - started, **{f"{k}_s": v for k, v in outcome.seconds.items()}}


def run(tenants: int, cells: int, runs: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fairshare-bench-cold-"))
    try:
        config_dir = root / "config"
        progress(f"writing {tenants:,} tenants in {cells} cells")
        write_cells_config(config_dir, tenants, 28000, cells, size=-(-tenants // cells))
        endpoints = root / "endpoints.yaml"
        write_endpoints(endpoints, 29000, 28000, cells)
        os.sync()
        key = SigningKey.load_or_create(root / "state")
        each: dict[str, list[dict[str, float]]] = {"one process": [], "workers": []}
        first_load(config_dir, endpoints, key)  # warms the page cache and the imports for both
        for k in range(runs):
            for name, setting in (("one process", 1), ("workers", None)):
                _with_workers(config_dir, setting)
                each[name].append(first_load(config_dir, endpoints, key))
                progress(f"run {k + 1}/{runs}, {name}: {each[name][-1]['total_s']:.2f}s")
        yaml_s = _yaml_readers(config_dir / "tenants", runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = {name: {part: statistics.median(r[part] for r in rows) for part in rows[0]} for name, rows in each.items()}
    ratio = median["workers"]["total_s"] / median["one process"]["total_s"]
    yaml_median = {name: statistics.median(times) for name, times in yaml_s.items()}
    return {
        "benchmark": "cold_load", "environment": report.environment(), "tenants": tenants, "cells": cells,
        "runs": runs, "cpus": usable_cpus(), "processes": worker_count(tenants, None),
        "median": median, "each": each,
        # No target of its own: it serves issue 14's time to applied (bench/cells.py).
        "ratio": {"workers_vs_one_process": ratio,
                  "yaml_data_vs_pyyaml": yaml_median["yaml_data"] / yaml_median["pyyaml"]},
        "yaml_s": yaml_median,
    }


def _yaml_readers(tenants_dir: Path, runs: int) -> dict[str, list[float]]:
    """Every tenant file's bytes (read once) to plain data: PyYAML's loader against yaml_data's, alternating."""
    texts = [p.read_bytes() for p in sorted(tenants_dir.iterdir())]
    out: dict[str, list[float]] = {"pyyaml": [], "yaml_data": []}
    for _ in range(runs):
        for name, read in (("pyyaml", lambda t: yaml.load(t, Loader=Loader)), ("yaml_data", load_yaml)):
            started = time.perf_counter()
            docs = [read(t) for t in texts]
            out[name].append(time.perf_counter() - started)
            del docs
    return out


def render(results: dict[str, Any]) -> str:
    m = results["median"]
    rows = [[name, round(r["total_s"], 2), round(r["load_s"], 2), round(r["compile_s"], 2)] for name, r in m.items()]
    ratio = results["ratio"]["workers_vs_one_process"]
    return f"""# Cold load of {results['tenants']:,} tenants ({results['cells']} cells)

A fresh ControlPlane's first load (load + policy + compile + publish, no Envoy), median of {results['runs']}
alternating runs: in worker processes ({results['processes']} processes on {results['cpus']} usable CPUs)
against one process (`controlplane.workers: 1`).

{report.markdown_table(["", "total s", "load s", "compile s"], rows)}

- workers vs one process: {ratio:.3f}x
- the tenant files' YAML (read once, {results['tenants']:,} files): yaml_data {results['yaml_s']['yaml_data']:.2f}s vs
  PyYAML's loader {results['yaml_s']['pyyaml']:.2f}s: {results['ratio']['yaml_data_vs_pyyaml']:.3f}x
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results = run(args.tenants, args.cells, args.runs)
    md = render(results)
    path = report.write_results("cold_load", results, md)
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
