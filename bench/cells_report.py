"""The cells benchmarks' ratios, targets, Markdown and plots (bench/cells.py, bench/cells_scale.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.cells_config import REGION
from bench.report import environment, markdown_table

TARGETS_10K = {"time_to_applied": 0.4, "largest_envoy_memory": 0.3, "edit_served": 0.3}
MB = 1e6


def _target(value: float, target: float, below: bool = False) -> dict[str, Any]:
    return {"value": value, "target": target, "met": value < target if below else value <= target}


def applied_on_own_nodes(row: dict[str, Any]) -> float:
    """Computed: the control plane's first load, then every Envoy at once on a node of its own, each as fast as
    it applied its snapshot alone here (they ran one at a time on this machine's 2 cores)."""
    return float(row["build_s"] + max(e["applied_s"] for e in row["envoys"].values()))


def largest(row: dict[str, Any]) -> tuple[str, int]:
    key, envoy = max(row["envoys"].items(), key=lambda kv: kv[1]["alloc_bytes"])
    return key, int(envoy["alloc_bytes"])


def summarise_10k(single: dict[str, Any], split: dict[str, Any], moves: dict[str, Any] | None) -> dict[str, Any]:
    base_t, cells_t = applied_on_own_nodes(single), applied_on_own_nodes(split)
    base_mem, (big_key, big_mem) = single["envoys"][REGION]["alloc_bytes"], largest(split)
    base_edit, cells_edit = single["edit"]["p50"]["served_s"], split["edit"]["p50"]["served_s"]
    targets = {
        "time_to_applied": _target(cells_t / base_t, TARGETS_10K["time_to_applied"]),
        "largest_envoy_memory": _target(big_mem / base_mem, TARGETS_10K["largest_envoy_memory"]),
        "edit_served": _target(cells_edit / base_edit, TARGETS_10K["edit_served"]),
    }
    if moves is not None:
        targets["moves_failed_requests"] = {"value": moves["failed"], "target": 0, "met": moves["failed"] == 0}
    return {
        "benchmark": "cells", "environment": environment(),
        "single": single, "cells": split, "moves": moves,
        "figures": {
            "time_to_applied_s": {"single": base_t, "cells": cells_t},
            "largest_envoy_alloc_bytes": {"single": base_mem, "cells": big_mem, "cells_largest": big_key},
            "edit_served_p50_s": {"single": base_edit, "cells": cells_edit},
        },
        "targets": targets,
    }


def verdict(targets: dict[str, dict[str, Any]]) -> str:
    return "\n".join(f"- {name}: {v['value']:.3g} (target {'<' if name.endswith('_mb') else '<='} {v['target']:g})"
                     f" — {'met' if v['met'] else 'NOT met'}" for name, v in targets.items())


def envoy_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["layout", "Envoy", "tenants", "resources", "snapshot MB", "applied alone s", "alloc MB", "RSS MB"],
        [[r["name"], key, e["tenants"], e["resources"], round(e["snapshot_bytes"] / MB, 2), round(e["applied_s"], 2),
          round(e["alloc_bytes"] / MB), round(e["rss_bytes"] / MB)]
         for r in rows for key, e in r["envoys"].items()])


def edit_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["layout", "edits", "published p50 s", "ACKed p50 s", "served p50 s", "served max s"],
        [[r["name"], r["edit"]["edits"], round(r["edit"]["p50"]["published_s"], 3),
          round(r["edit"]["p50"]["applied_s"], 3), round(r["edit"]["p50"]["served_s"], 3),
          round(max(e["served_s"] for e in r["edit"]["each"]), 3)] for r in rows if "edit" in r])


def figures_table(results: dict[str, Any]) -> str:
    single, split, f, t = results["single"], results["cells"], results["figures"], results["targets"]
    big = f["largest_envoy_alloc_bytes"]
    return markdown_table(["figure", "single Envoy", f"{split['shared_cells']} cells", "ratio", "target"], [
        ["time to applied s (computed)", round(f["time_to_applied_s"]["single"], 2),
         round(f["time_to_applied_s"]["cells"], 2), round(t["time_to_applied"]["value"], 3),
         f"<= {t['time_to_applied']['target']}"],
        ["largest Envoy alloc MB", round(big["single"] / MB), f"{big['cells'] / MB:.0f} ({big['cells_largest']})",
         round(t["largest_envoy_memory"]["value"], 3), f"<= {t['largest_envoy_memory']['target']}"],
        ["edit served p50 s", round(f["edit_served_p50_s"]["single"], 3), round(f["edit_served_p50_s"]["cells"], 3),
         round(t["edit_served"]["value"], 3), f"<= {t['edit_served']['target']}"],
        ["first load s", round(single["build_s"], 2), round(split["build_s"], 2),
         round(split["build_s"] / single["build_s"], 3), ""],
        ["slowest Envoy applying alone s", *_ratio_row(*(max(e["applied_s"] for e in r["envoys"].values())
                                                         for r in (single, split)))],
        *([["edit: the control plane's own part p50 s (load + compile + publish)",
            *_ratio_row(*(own_part(r["edit"]) for r in (single, split)))],
           ["edit: Envoy's pre-publish validation p50 s",
            *_ratio_row(*(r["edit"]["p50"]["reload_validate_s"] for r in (single, split)))]]
          if "reload_validate_s" in single["edit"]["p50"] else []),
    ])


def own_part(edit: dict[str, Any]) -> float:
    """What an edit costs the control plane besides Envoy's validation and the watcher's debounce."""
    p50 = edit["p50"]
    return float(p50["reload_load_s"] + p50["reload_compile_s"] + p50["reload_publish_s"])


def _ratio_row(single: float, cells: float) -> list[Any]:
    return [round(single, 3), round(cells, 3), round(cells / single, 3) if single else "-", ""]


def render_10k(results: dict[str, Any]) -> str:
    single, split, moves = results["single"], results["cells"], results["moves"]
    text = f"""# Cells at {single['tenants']:,} tenants

{single['tenants']:,} synthetic tenants (bench/synth's shape) in {REGION}, in today's single-Envoy layout and
split into {split['shared_cells']} cells of at most {split['cell_size']:,} behind a front tier, one after the
other in the same run, each on a fresh control plane (real ControlPlane, Envoy validation on, delta ADS).

Measured: each layout's first load (load + policy + compile + publish); each Envoy started alone, one at a
time, from its start until it applied its snapshot; each Envoy's memory (admin /memory, every Envoy
running); one tenant's edit (its split flipped) served through the region's entry (the front tier for
cells): from writing the file until 10 requests in a row show the new version, p50 of
{single['edit']['edits']} edits. Computed: time to applied = first load + the slowest Envoy applying alone,
as when every Envoy runs on its own node (here 2 cores run them one at a time).

{envoy_table([single, split])}

{edit_table([single, split])}

{figures_table(results)}
"""
    if moves is not None:
        text += f"""
## Moving {moves['pinned']} tenants to a new cell under load

An edit adds dedicated cell d0 to the region and pins {moves['pinned']} tenants to it (its Envoy already
running, waiting for its snapshot) while {8} connections send requests through the front tier, half for
moving tenants, half for staying ones. Tenants whose cell changed: {moves['moved_tenants']}
({moves['moved_unpinned']} not pinned: the shared cells' overflow rebalanced). From the edit: the front sent
every moved tenant to d0 (every front Envoy applied it) after {moves['front_switched_s']:.2f}s; their old cells
({', '.join(moves['old_cells'])}) dropped them (their Envoys applied it) after {moves['old_cells_dropped_s']:.2f}s
(drain {moves['drain_seconds']:g}s). Requests: {moves['requests']:,} ({moves['requests_during_move']:,} from the
edit on), failed (non-2xx): {moves['failed']} {moves['failed_by_status'] or ''}. Afterwards each moved tenant,
by status: {moves['after_move']}.
"""
    text += f"\n{verdict(results['targets'])}\n\nMachine: {results['environment']}\n"
    return text


def plot_memory(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [results[k] for k in ("baseline", "single", "cells", "scale") if results.get(k)]
    labels, values, colours = [], [], []
    for row in rows:
        for key, e in row["envoys"].items():
            labels.append(f"{row['name']}\n{key.split('/')[-1]} ({e['tenants']:,})")
            values.append(e["alloc_bytes"] / MB)
            colours.append("tab:grey" if key.endswith("front") else "tab:red" if "/" not in key else "tab:blue")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels)), 4.2))
    ax.bar(range(len(labels)), values, color=colours)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("Envoy allocated, MB")
    ax.set_title("Envoy memory: single layout (red), a cell (blue), the front tier (grey)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
