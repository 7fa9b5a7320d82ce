"""bench/cells_scale.py's ratios, targets and Markdown."""

from __future__ import annotations

import statistics
from typing import Any

from bench.cells_config import REGION
from bench.cells_report import MB, edit_table, envoy_table, verdict
from bench.report import environment, markdown_table

LOAD_GROWTH = 12.0  # 10x the tenants: no worse than linear, with 20% for noise
CELL_MEMORY = 1.1
FRONT_MB = 200.0
EDIT_GROWTH = 1.2


def _cells_measured(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: e for k, e in row["envoys"].items() if not k.endswith("/front")}


def load_samples(row: dict[str, Any]) -> list[float]:
    """The layout's first loads: its samples (the rig's first), else the rig's alone."""
    return row.get("build_samples_s") or [row["build_s"]]


def first_load_s(row: dict[str, Any]) -> float:
    return statistics.median(load_samples(row))


def summarise_scale(one: dict[str, Any], ten: dict[str, Any], big: dict[str, Any]) -> dict[str, Any]:
    base_cell = one["envoys"][REGION]["alloc_bytes"]
    cells = _cells_measured(big)
    worst_key, worst = max(cells.items(), key=lambda kv: kv[1]["alloc_bytes"])
    front = big["envoys"][f"{REGION}/front"]["alloc_bytes"]
    load = first_load_s(big) / first_load_s(ten)
    edit = big["edit"]["p50"]["served_s"] / ten["edit"]["p50"]["served_s"]
    return {
        "benchmark": "cells_scale", "environment": environment(),
        "baseline": one, "single": None, "cells": ten, "scale": big,
        "figures": {
            "first_load_s": {"10k": first_load_s(ten), "100k": first_load_s(big),
                             "samples": {"10k": ten.get("build_samples_s"), "100k": big.get("build_samples_s")}},
            "cell_envoy_alloc_bytes": {"single_2500": base_cell, "largest_cell_at_100k": worst["alloc_bytes"],
                                       "largest_cell": worst_key},
            "front_alloc_bytes": front,
            "edit_served_p50_s": {"10k": ten["edit"]["p50"]["served_s"], "100k": big["edit"]["p50"]["served_s"]},
        },
        "targets": {
            "first_load_growth": {"value": load, "target": LOAD_GROWTH, "met": load <= LOAD_GROWTH},
            "cell_envoy_memory": {"value": worst["alloc_bytes"] / base_cell, "target": CELL_MEMORY,
                                  "met": worst["alloc_bytes"] / base_cell <= CELL_MEMORY},
            "front_envoy_mb": {"value": front / MB, "target": FRONT_MB, "met": front / MB < FRONT_MB},
            "edit_served_growth": {"value": edit, "target": EDIT_GROWTH, "met": edit <= EDIT_GROWTH},
        },
    }


def _samples(row: dict[str, Any]) -> str:
    return ", ".join(f"{x:.2f}" for x in load_samples(row))


def render_scale(results: dict[str, Any]) -> str:
    one, ten, big = results["baseline"], results["cells"], results["scale"]
    f, t = results["figures"], results["targets"]
    measured = len(_cells_measured(big))
    figures = markdown_table(["figure", "baseline", f"{big['tenants']:,} tenants", "ratio", "target"], [
        [f"first load s (load + policy + compile + publish; median of {len(load_samples(big))})",
         f"{first_load_s(ten):.2f} ({ten['tenants']:,}; {_samples(ten)})",
         f"{first_load_s(big):.2f} ({_samples(big)})", round(t["first_load_growth"]["value"], 2),
         f"<= {LOAD_GROWTH:g}x"],
        ["largest cell Envoy alloc MB", f"{f['cell_envoy_alloc_bytes']['single_2500'] / MB:.0f} (single 2,500)",
         f"{f['cell_envoy_alloc_bytes']['largest_cell_at_100k'] / MB:.0f} "
         f"({f['cell_envoy_alloc_bytes']['largest_cell']})",
         round(t["cell_envoy_memory"]["value"], 3), f"<= {CELL_MEMORY:g}x"],
        ["front Envoy alloc MB", "", round(f["front_alloc_bytes"] / MB), "", f"< {FRONT_MB:g} MB"],
        ["edit served p50 s", f"{ten['edit']['p50']['served_s']:.3f} ({ten['tenants']:,})",
         round(big["edit"]["p50"]["served_s"], 3), round(t["edit_served_growth"]["value"], 3),
         f"<= {EDIT_GROWTH:g}x"],
    ])
    sizes = big.get("cell_snapshots", {})
    spread = (f"Every one of the {len(sizes)} cells' snapshots: {min(s['tenants'] for s in sizes.values()):,}-"
              f"{max(s['tenants'] for s in sizes.values()):,} tenants, "
              f"{min(s['bytes'] for s in sizes.values()) / MB:.2f}-{max(s['bytes'] for s in sizes.values()) / MB:.2f}"
              " MB.") if sizes else ""
    return f"""# Cells at {big['tenants']:,} tenants

{big['tenants']:,} synthetic tenants (bench/synth's shape) in {REGION}, split into {big['shared_cells']} cells of at
most {big['cell_size']:,} behind a front tier; baselines in the same run: {ten['tenants']:,} tenants in
{ten['shared_cells']} cells, and a plain single-cell region of {one['tenants']:,} tenants (today's layout).
Each on a fresh control plane (real ControlPlane, Envoy validation on, delta ADS).

Measured: each layout's first load; the front's Envoy and {measured} cells' Envoys at {big['tenants']:,} (the
edited tenant's cell among them), each started alone until it applied its snapshot, and their memory
(admin /memory); one tenant's edit served through the front tier, p50 of {big['edit']['edits']} edits. Not
run: the other cells' Envoys, whose snapshots hold as many tenants of the same shapes. {spread}

{envoy_table([one, ten, big])}

{edit_table([ten, big])}

{figures}

{verdict(t)}

Machine: {results['environment']}
"""
