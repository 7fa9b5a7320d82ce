"""What the fairness benchmark computes from its raw samples: latency per tenant, service per tenant over
time (scraped from the replica's own Prometheus counters), which tenants were backlogged when, Jain's
fairness index and the largest service gap between two backlogged tenants."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.openloop import Sample
from bench.report import latency_stats

SERVICE_METRIC = "fairshare_runtime_service_seconds"
DEPTH_METRIC = "fairshare_runtime_tenant_queue_depth"


@dataclass(frozen=True)
class Scrape:
    at_s: float
    service: dict[str, float]  # cumulative worker seconds per tenant
    depth: dict[str, float]  # queued requests per tenant at that moment


def parse_scrape(at_s: float, text: str) -> Scrape:
    service: dict[str, float] = {}
    depth: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SERVICE_METRIC + "_total":
                service[sample.labels["tenant"]] = sample.value
            elif sample.name == DEPTH_METRIC:
                depth[sample.labels["tenant"]] = sample.value
    return Scrape(at_s, service, depth)


async def scrape_until(url: str, stop: asyncio.Event, interval_s: float, t0: float) -> list[Scrape]:
    """Scrape ``url`` every ``interval_s`` until ``stop`` is set (one last scrape after)."""
    out: list[Scrape] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(url) as resp:
                    out.append(parse_scrape(time.perf_counter() - t0, await resp.text()))
            except (TimeoutError, aiohttp.ClientError):
                pass
            if stop.is_set():
                return out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


@dataclass(frozen=True)
class Interval:
    start_s: float
    end_s: float
    service: dict[str, float]  # worker seconds each tenant got in the interval
    backlogged: frozenset[str]  # tenants with requests queued at both ends


def intervals(scrapes: Sequence[Scrape], tenants: Sequence[str]) -> list[Interval]:
    out = []
    for before, after in pairwise(scrapes):
        service = {t: after.service.get(t, 0.0) - before.service.get(t, 0.0) for t in tenants}
        backlogged = frozenset(t for t in tenants if before.depth.get(t, 0) > 0 and after.depth.get(t, 0) > 0)
        out.append(Interval(before.at_s, after.at_s, service, backlogged))
    return out


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one value takes everything."""
    total, squares = sum(values), sum(v * v for v in values)
    return 1.0 if squares == 0 else total * total / (len(values) * squares)


def fairness(spans: Sequence[Interval], weights: Mapping[str, float]) -> dict[str, Any]:
    """Jain's index of weight-normalised service over the intervals where every tenant was backlogged,
    and the largest gap in cumulative weight-normalised service between two tenants, counted only over
    intervals where both were backlogged (the Virtual Token Counter paper's measure), in seconds."""
    tenants = sorted(weights)
    all_busy = [s for s in spans if s.backlogged >= set(tenants)]
    normalised = {t: sum(s.service[t] for s in all_busy) / weights[t] for t in tenants}
    gaps = {}
    for a, b in combinations(tenants, 2):
        diff, worst = 0.0, 0.0
        for s in spans:
            if {a, b} <= s.backlogged:
                diff += s.service[a] / weights[a] - s.service[b] / weights[b]
                worst = max(worst, abs(diff))
        gaps[f"{a}/{b}"] = worst
    total = sum(sum(s.service.values()) for s in all_busy)
    return {
        "all_backlogged_s": sum(s.end_s - s.start_s for s in all_busy),
        "jain_index": jain(list(normalised.values())) if all_busy else None,
        "service_share": {t: (sum(s.service[t] for s in all_busy) / total if total else 0.0) for t in tenants},
        "max_gap_s": max(gaps.values()) if gaps else 0.0,
        "gaps_s": gaps,
    }


def tenant_stats(samples: Sequence[Sample], tenant: str, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """Latency of answered requests after the warm-up, goodput, and how the rest ended."""
    mine = [s for s in samples if s.tenant == tenant and s.started_s >= warmup_s]
    ok = [s.latency_s for s in mine if s.ok]
    statuses: dict[str, int] = {}
    for s in mine:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    return {
        "latency": latency_stats(ok),
        "throughput_rps": len(ok) / max(duration_s - warmup_s, 1e-9),
        "offered": len(mine),
        "statuses": statuses,
    }
