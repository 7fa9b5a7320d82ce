"""Moving 1% of a region's tenants to a new cell under load: an edit adds a dedicated cell and pins the
tenants to it while requests for moving and staying tenants go through the front tier; every non-2xx
counts. Timed from the edit: the front sending every moved tenant to its new cell (and every front Envoy
applied it), and every old cell dropping them (and its Envoy applied that)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.cells_config import DEDICATED, REGION, set_cells, write_tenant_fast
from bench.cells_measure import Bench, Layout, progress
from bench.cells_rig import FRONT_KEY, CellsRig, key_of
from bench.cells_runtime import tokens
from bench.loadgen import Result, Target, infer_body, one, run_sync
from bench.synth import tenant_id
from xds_server.cells.layout import cells, local_port

WARM_S = 2.0  # load before the edit, and after the last step
CONCURRENCY = 8


def _moving(pins: int) -> list[int]:
    """Enterprise (i % 3 == 0: its rate limit is far above this load, and a failed limit check lets it
    through) and US-only (i % 4 != 0: a pin holds in every region a tenant is served in, and eu-west-1 has no
    cells) tenants, i = 3 (mod 12), spread over the first 9,600."""
    return [96 * k + 3 for k in range(pins)]


async def move_under_load(layout: Layout, bench: Bench, pins: int) -> dict[str, Any]:
    rig, config_dir = layout.rig, layout.config_dir
    assert rig.cp is not None and rig.cp.config is not None
    cfg = rig.cp.config
    moving = [tenant_id(i) for i in _moving(pins)]
    staying = [tenant_id(i + 12) for i in _moving(pins)]  # also enterprise and US-only, never pinned
    before = dict(cfg.cells[REGION])
    shared = cfg.regions[REGION].cells.shared
    keys = tokens(bench.key, cfg.platform.auth, moving + staying)
    url = f"http://127.0.0.1:{layout.gateway_port}/v2/models/classifier/infer"
    targets = [Target(url, keys[t], infer_body(["fine"])) for pair in zip(moving, staying, strict=True) for t in pair]
    # The new cell's gateway comes up first (an operator's rollout): it waits for its snapshot.
    rig.launch_envoy(DEDICATED)
    results: list[Result] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            results.extend(run_sync(lambda i: targets[i % len(targets)], requests=400, concurrency=CONCURRENCY))

    worker = threading.Thread(target=load, name="bench-load")
    worker.start()
    try:
        await asyncio.sleep(WARM_S)
        progress(f"moves: pinning {pins} tenants to a new dedicated cell {DEDICATED} under load")
        sent_before = len(results)
        t0 = time.perf_counter()
        set_cells(config_dir, shared, (DEDICATED,))
        for i in _moving(pins):
            write_tenant_fast(config_dir / "tenants", i, cell=DEDICATED)
        switched_s = await _until(lambda: all(rig.front_table().get(t) == DEDICATED for t in moving), t0)
        await rig.store.wait_applied(FRONT_KEY, rig.version(FRONT_KEY), timeout=120)
        switched_s = time.perf_counter() - t0
        progress(f"moves: the front sends all {pins} to {DEDICATED} after {switched_s:.2f}s")
        old_cells = sorted({before[t] for t in moving})
        await _until(lambda: not any(rig.holds(before[t], t) for t in moving), t0)
        for cell in old_cells:
            await rig.store.wait_applied(key_of(cell), rig.version(key_of(cell)), timeout=120)
        dropped_s = time.perf_counter() - t0
        progress(f"moves: their old cells dropped them after {dropped_s:.2f}s")
        await asyncio.sleep(WARM_S)
    finally:
        stop.set()
        await asyncio.to_thread(worker.join)
    after = dict(rig.cp.config.cells[REGION]) if rig.cp.config else {}
    direct = await _direct_checks(rig, layout.gateway_port, url, moving, before, keys)
    failed = [r for r in results if not 200 <= r.status < 300]
    return {
        "pinned": pins, "moved_tenants": sum(1 for t, c in after.items() if before.get(t) != c),
        "moved_unpinned": sum(1 for t, c in after.items() if before.get(t) != c and t not in moving),
        "old_cells": old_cells, "front_switched_s": switched_s, "old_cells_dropped_s": dropped_s,
        "drain_seconds": rig.cp.config.platform.cells.drain_seconds if rig.cp.config else None,
        "requests": len(results), "requests_during_move": len(results) - sent_before,
        "failed": len(failed), "failed_by_status": dict(Counter(r.status for r in failed)),
        "failed_examples": [r.error or str(r.status) for r in failed[:5]],
        "after_move": direct, "cells": cells(rig.cp.config.regions[REGION]) if rig.cp.config else [],
    }


async def _until(done: Any, t0: float, timeout: float = 180.0) -> float:
    while not done():
        if time.perf_counter() > t0 + timeout:
            raise RuntimeError(f"moves: not done after {timeout:.0f}s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - t0


async def _direct_checks(rig: CellsRig, front_port: int, url: str, moving: list[str], before: dict[str, str],
                         keys: dict[str, str]) -> dict[str, Any]:
    """After the move: each moved tenant answered through the front (200), by its new cell's gateway
    (200), and refused by its old cell's (it is no longer there)."""
    assert rig.cp is not None and rig.cp.config is not None
    names = cells(rig.cp.config.regions[REGION])
    region = rig.cp.config.regions[REGION]
    path = "/v2/models/classifier/infer"
    statuses: dict[str, Counter[int]] = {"front": Counter(), "new_cell": Counter(), "old_cell": Counter()}
    async with aiohttp.ClientSession() as session:
        for t in moving:
            for where, port in (("front", front_port),
                                ("new_cell", local_port(region, names.index(DEDICATED))),
                                ("old_cell", local_port(region, names.index(before[t])))):
                r = await one(session, Target(f"http://127.0.0.1:{port}{path}", keys[t], infer_body(["fine"])))
                statuses[where][r.status] += 1
    assert url.endswith(path)
    return {where: dict(c) for where, c in statuses.items()}
