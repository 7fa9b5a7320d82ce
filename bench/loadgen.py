"""Closed-loop HTTP load for tests and benchmarks: N requests (or a time window) at a concurrency,
each result keeping status, latency and what served it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import aiohttp


def infer_body(texts: list[str], name: str = "text") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}).encode()


@dataclass(frozen=True)
class Result:
    status: int
    latency_s: float
    started_s: float
    model_version: str | None
    replica: str | None  # its x-fairshare-replica: only straight from a replica (a gateway removes it)
    error: str | None = None
    request_id: str | None = None  # a gateway's x-request-id, which finds the replica in its access log

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None = None
    body: bytes = infer_body(["hello"])
    headers: tuple[tuple[str, str], ...] = ()

    def all_headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", **dict(self.headers)}
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        return h


async def one(session: aiohttp.ClientSession, target: Target, t0: float = 0.0) -> Result:
    start = time.perf_counter()
    try:
        async with session.post(target.url, data=target.body, headers=target.all_headers()) as resp:
            raw = await resp.read()
            version = None
            if resp.status == 200:
                version = json.loads(raw).get("model_version")
            return Result(resp.status, time.perf_counter() - start, start - t0, version,
                          resp.headers.get("x-fairshare-replica"), request_id=resp.headers.get("x-request-id"))
    except (TimeoutError, aiohttp.ClientError) as err:
        return Result(0, time.perf_counter() - start, start - t0, None, None, error=repr(err))


async def run(
    target: Target | Callable[[int], Target],
    requests: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 8,
    timeout_s: float = 60,
) -> list[Result]:
    """Send `requests` requests, or keep sending for `duration_s`, with `concurrency` in flight."""
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests or duration_s")
    pick = target if callable(target) else (lambda _i: target)
    results: list[Result] = []
    counter = iter(range(10**9))
    t0 = time.perf_counter()
    deadline = t0 + duration_s if duration_s is not None else None
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def worker() -> None:
            for i in counter:
                if requests is not None and i >= requests:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                results.append(await one(session, pick(i), t0))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def run_sync(*args, **kwargs) -> list[Result]:  # type: ignore[no-untyped-def]
    return asyncio.run(run(*args, **kwargs))


def served_by(served: Callable[[], Mapping[str, str | None]], results: list[Result],
              timeout: float = 30.0) -> list[Result]:
    """`results` of requests through a gateway, each with the replica that answered it: the gateway keeps the
    runtime's x-fairshare-replica off its responses and logs it by request id (compiler/listener.py).
    `served`: that log's request id -> replica (LocalPlatform.served_by); waits for Envoy to flush it."""
    wanted = {r.request_id for r in results if r.request_id is not None and r.replica is None}
    deadline = time.monotonic() + timeout
    where = served()
    while not wanted <= where.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        where = served()
    return [dataclasses.replace(r, replica=where.get(r.request_id)) if r.request_id in wanted else r
            for r in results]


@contextlib.contextmanager
def in_background(target: Target, requests: int, concurrency: int) -> Iterator[list[Result]]:
    """Batches of `requests` in a thread of their own until the block ends (each batch on new connections,
    as fresh clients come); yields the list the results are appended to as they arrive."""
    results: list[Result] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            results.extend(run_sync(target, requests=requests, concurrency=concurrency))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        yield results
    finally:
        stop.set()
        worker.join()
