"""Open-loop load: requests arrive at a tenant's offered rate (Poisson), whether or not earlier ones have
been answered, as independent users do. A closed loop (bench/loadgen.py) slows down when the server
does, which hides exactly the queueing a fairness benchmark has to show."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import aiohttp

from bench.loadgen import Target


@dataclass(frozen=True)
class Stream:
    """One tenant's offered load."""

    tenant: str
    target: Target
    rate_per_s: float


@dataclass(frozen=True)
class Sample:
    tenant: str
    status: int
    started_s: float  # since the run began
    latency_s: float
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


async def _send(session: aiohttp.ClientSession, stream: Stream, t0: float, out: list[Sample]) -> None:
    start = time.perf_counter()
    try:
        async with session.post(stream.target.url, data=stream.target.body,
                                headers=stream.target.all_headers()) as resp:
            await resp.read()
            status, retry = resp.status, resp.headers.get("retry-after")
    except (TimeoutError, aiohttp.ClientError):
        status, retry = 0, None
    out.append(Sample(stream.tenant, status, start - t0, time.perf_counter() - start, retry))


async def _arrivals(session: aiohttp.ClientSession, stream: Stream, t0: float, duration_s: float,
                    rng: random.Random, out: list[Sample], tasks: set[asyncio.Task[None]]) -> None:
    next_at = t0 + rng.expovariate(stream.rate_per_s)
    while next_at < t0 + duration_s:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(_send(session, stream, t0, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += rng.expovariate(stream.rate_per_s)


async def run(streams: list[Stream], duration_s: float, seed: int = 1, timeout_s: float = 60.0,
              start_at: float | None = None) -> list[Sample]:
    """Offer every stream for ``duration_s`` seconds; wait for the answers; return one sample per request.

    ``start_at`` (a ``time.perf_counter()`` value, which is system-wide) lines up several processes."""
    out: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        t0 = time.perf_counter() if start_at is None else start_at
        await asyncio.gather(*(
            _arrivals(session, stream, t0, duration_s, random.Random(f"{seed}/{stream.tenant}"), out, tasks)
            for stream in streams
        ))
        while tasks:
            await asyncio.gather(*list(tasks))
    return out


def run_sync(streams: list[Stream], duration_s: float, seed: int = 1, start_at: float | None = None) -> list[Sample]:
    return asyncio.run(run(streams, duration_s, seed, start_at=start_at))


async def run_apart(streams: list[Stream], duration_s: float, seed: int = 1) -> list[Sample]:
    """Each stream from its own process, as separate customers would send. In one process, a flood's
    answers would queue in the same client event loop as everyone else's and add its own delay to the
    latencies the others measure."""
    start_at = time.perf_counter() + 1.0  # time for the processes to start
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(len(streams), mp_context=multiprocessing.get_context("fork")) as pool:
        parts = await asyncio.gather(*(
            loop.run_in_executor(pool, run_sync, [stream], duration_s, seed, start_at) for stream in streams
        ))
    return [sample for part in parts for sample in part]
