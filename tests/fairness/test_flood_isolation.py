"""End to end through the real Envoy: a tenant flooding at ten times its share does not take a
well-behaved tenant's service with it under weighted fair queuing, and does under FIFO.

One replica whose model holds the worker 40 ms per request (``lexicon-simulated``), serving one request at
a time. What the test counts is order, not time: for each of the light tenant's requests, how many of the
flood's requests were answered while it waited, i.e. how many the scheduler put ahead of it. That number
is set by the scheduling policy alone, however fast or busy the machine; the latencies it causes are what
the benchmark measures (bench/fairness.py, docs/fairness.md)."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import Iterator

import pytest

from bench import loadgen, openloop
from bench.fairness_setup import TENANTS, FairnessPlatform, fairness_platform, share
from bench.report import latency_stats

SERVICE_MS = 40.0
CAPACITY = 1000.0 / SERVICE_MS
FLOOD, LIGHT = TENANTS[0], TENANTS[1]

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FairnessPlatform]:
    with fairness_platform(tmp_path_factory.mktemp("fairness"), service_ms=SERVICE_MS) as fp:
        yield fp


def overtaken(fp: FairnessPlatform, seconds: float) -> tuple[list[int], dict[int, int], list[float]]:
    """The light tenant at 80% of its share and the flood at 10x its share, for `seconds`. For each of the
    light tenant's answered requests after the first second: how many flood requests were answered while
    it was in flight (the one on the device when it arrived included). Also how the light tenant's
    requests ended, and their latencies (for the failure message only)."""
    streams = [
        openloop.Stream(LIGHT.id, loadgen.Target(fp.url, fp.tokens[LIGHT.id]), 0.8 * share(LIGHT) * CAPACITY),
        openloop.Stream(FLOOD.id, loadgen.Target(fp.url, fp.tokens[FLOOD.id]), 10 * share(FLOOD) * CAPACITY),
    ]
    samples = asyncio.run(openloop.run_apart(streams, seconds))
    flood_done = sorted(s.started_s + s.latency_s for s in samples if s.tenant == FLOOD.id and s.ok)
    light = [s for s in samples if s.tenant == LIGHT.id]
    statuses = dict(Counter(s.status for s in light))
    measured = [s for s in light if s.ok and s.started_s >= 1.0]
    counts = [bisect.bisect_left(flood_done, s.started_s + s.latency_s) - bisect.bisect_right(flood_done, s.started_s)
              for s in measured]
    return counts, statuses, [s.latency_s for s in measured]


def quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_a_flood_leaves_the_light_tenant_alone_under_wfq_and_not_under_fifo(platform: FairnessPlatform) -> None:
    wfq, wfq_statuses, wfq_latency = overtaken(platform, 8)
    platform.use_scheduler("fifo")
    fifo, fifo_statuses, fifo_latency = overtaken(platform, 8)
    platform.use_scheduler("wfq")

    # The light tenant is never refused, whoever floods and whatever the policy.
    assert set(wfq_statuses) == set(fifo_statuses) == {200}, (wfq_statuses, fifo_statuses)
    assert len(wfq) >= 20 and len(fifo) >= 20, (len(wfq), len(fifo))
    summary = (f"flood requests answered while each light request waited: wfq {sorted(wfq)}, fifo {sorted(fifo)}\n"
               f"latency: wfq {latency_stats(wfq_latency)}, fifo {latency_stats(fifo_latency)}")
    # The flood is real: under FIFO the light tenant's typical request waits behind the flood's queue
    # (up to the flood's queue bound, 16).
    assert quantile(fifo, 0.5) >= 8, summary
    # Under WFQ a light request waits for the flood request already on the device and at most one more
    # (equal weights, a non-preemptive device; measured: at most 2, against FIFO's 16): its own service,
    # not the flood's queue. One more is allowed for the order as the client sees it.
    assert quantile(wfq, 0.99) <= 3, summary
