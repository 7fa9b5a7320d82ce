"""Where model work waits and runs: the seam for a weighted fair scheduler.

The server hands every prediction to a ``Scheduler`` with the tenant's identity, its fair-share weight and
a cost estimate; the scheduler decides when it runs. ``FifoScheduler`` runs work in arrival order on one
worker thread: one thread because a model on one device gains nothing from concurrent forward passes
(they contend for the same cores or GPU) and because ordering is then entirely the scheduler's choice.
A weighted-fair-queuing scheduler replaces the queue discipline and keeps the rest: same ``submit``,
same single worker, and the measured service time that ``ServiceObserver`` reports is the cost it
charges the tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")

# Told (tenant, seconds of worker time) after each piece of work, whether it succeeded or raised.
ServiceObserver = Callable[[str, float], None]


class SchedulerClosedError(RuntimeError):
    """Work submitted after ``close()``: the replica is shutting down."""


class Scheduler(Protocol):
    async def submit(self, tenant: str, weight: float, cost_hint: float, work: Callable[[], T]) -> T:
        """Run ``work`` (blocking, off the event loop) when the policy allows; return its result.

        ``weight`` is the tenant's fair share (> 0), ``cost_hint`` the model's up-front estimate of the
        work in its own unit. Cancelling the returned awaitable before the work starts withdraws it.
        """
        ...

    def queue_depth(self) -> int:
        """Requests waiting on the scheduler (queued plus running)."""
        ...

    async def close(self) -> None:
        """Refuse new work, let what is queued finish, and release the worker."""
        ...


class FifoScheduler:
    """First come, first served on a single worker thread. Ignores weight and cost by design."""

    def __init__(self, observer: ServiceObserver | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-worker")
        self._observer = observer
        self._closed = False
        # Touched only on the event loop (submit is a coroutine), so no lock.
        self._pending = 0

    async def submit(self, tenant: str, weight: float, cost_hint: float, work: Callable[[], T]) -> T:
        if self._closed:
            raise SchedulerClosedError("scheduler is closed")
        self._pending += 1
        try:
            # The executor's queue is FIFO; cancelling this await before the work starts removes it.
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, tenant, work)
        finally:
            self._pending -= 1

    def _timed(self, tenant: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return work()
        finally:
            if self._observer is not None:
                self._observer(tenant, time.perf_counter() - start)

    def queue_depth(self) -> int:
        return self._pending

    async def close(self) -> None:
        self._closed = True
        # Joining the worker blocks, so do it off the loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
