"""One tenant's edit served, timed as bench/controlplane.py times it (from writing the tenant's file until 10
requests in a row through the region's entry show the new split), repeated: the split flips between
all-v2 and all-v1, so each edit's new version is unambiguous."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.cells_config import REGION, write_tenant_fast
from bench.cells_rig import CellsRig, key_of
from bench.loadgen import Target, infer_body, one
from bench.synth import tenant_id

EDITED = 1  # a US-only tenant with a 90/10 split (bench/controlplane.py's)
STREAK = 10  # in a row of the new version: under the old 90/10 split that happens once in 10^10


async def edits_served(rig: CellsRig, config_dir: Path, url: str, token: str, edits: int) -> dict[str, Any]:
    """`edits` edits of EDITED's split; each waited on until served and ACKed before the next."""
    assert rig.cp is not None and rig.cp.config is not None
    cell = rig.cp.config.cells.get(REGION, {}).get(tenant_id(EDITED))
    key = key_of(cell)
    target = Target(f"{url}/v2/models/classifier/infer", token, infer_body(["fine"]))
    each: list[dict[str, float]] = []
    async with aiohttp.ClientSession() as session:
        for j in range(edits):
            version, split = ("v2", (0, 100)) if j % 2 == 0 else ("v1", (100, 0))
            each.append(await _one_edit(rig, key, config_dir, session, target, version, split))
    write_tenant_fast(config_dir / "tenants", EDITED)  # back to the 90/10 split
    await asyncio.sleep(1.0)
    return {
        "edits": edits, "cell": cell, "snapshot": key,
        "p50": {k: statistics.median(e[k] for e in each) for k in each[0]},
        "each": each,
    }


async def _one_edit(rig: CellsRig, key: str, config_dir: Path, session: aiohttp.ClientSession, target: Target,
                    version: str, split: tuple[int, int]) -> dict[str, float]:
    before = rig.version(key)
    published_s: float | None = None
    served_s: float | None = None
    acked: asyncio.Task[float] | None = None
    t0 = time.perf_counter()
    write_tenant_fast(config_dir / "tenants", EDITED, split=split)
    streak_start, streak = 0.0, 0
    while served_s is None and time.perf_counter() < t0 + 60:
        if published_s is None and rig.version(key) != before:
            published_s = time.perf_counter() - t0
            acked = asyncio.create_task(_acked_after(rig, key, t0))
        sent = time.perf_counter()
        r = await one(session, target)
        if r.ok and r.model_version == version:
            streak_start = sent if streak == 0 else streak_start
            streak += 1
            if streak >= STREAK:
                served_s = streak_start - t0
        else:
            streak = 0
    if served_s is None or published_s is None or acked is None:
        raise RuntimeError(f"an edit of {tenant_id(EDITED)} was not served within 60 s")
    # Where the control plane's reload of this edit spent its time (load, compile, validate, publish).
    assert rig.cp is not None and rig.cp.last is not None
    reload = {f"reload_{part}_s": s for part, s in rig.cp.last.seconds.items()}
    return {"published_s": published_s, "applied_s": await acked, "served_s": served_s, **reload}


async def _acked_after(rig: CellsRig, key: str, t0: float) -> float:
    await rig.store.wait_applied(key, rig.version(key), timeout=60)
    return time.perf_counter() - t0
