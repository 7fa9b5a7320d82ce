"""What every benchmark writes: `bench/results/<name>.json` for machines, `<name>.md` for people, plus the
latency statistics and Markdown tables they share, so results from different benchmarks read alike."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

PERCENTILES = (50, 90, 99)


def progress(bench: str, message: str) -> None:
    """A benchmark's progress line, on stderr so that what it prints as results stays clean."""
    print(f"[{bench}] {message}", file=sys.stderr, flush=True)


def results_dir() -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR


def write_results(name: str, results: dict[str, Any], markdown: str) -> Path:
    """Write `<name>.json` and `<name>.md` under bench/results/; returns the JSON path."""
    out = results_dir()
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return json_path


def environment() -> dict[str, Any]:
    """Where the numbers came from: a latency figure means little without the machine it ran on."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def latency_stats(seconds: Sequence[float], percentiles: Sequence[int] = PERCENTILES) -> dict[str, float]:
    """Percentiles, mean and max in milliseconds (keys `p50_ms`, ..., `mean_ms`, `max_ms`) and the count."""
    ms = np.asarray(seconds, dtype=float) * 1000.0
    if ms.size == 0:
        return {"count": 0}
    stats: dict[str, float] = {"count": int(ms.size)}
    for p in percentiles:
        stats[f"p{p}_ms"] = float(np.percentile(ms, p))
    stats["mean_ms"] = float(ms.mean())
    stats["max_ms"] = float(ms.max())
    return stats


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; floats get 3 decimals (milliseconds to the microsecond)."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
