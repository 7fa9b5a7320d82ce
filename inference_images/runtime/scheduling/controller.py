"""The queueing machinery every policy shares: per-tenant queues, admission, batching, one worker.

``QueueScheduler`` keeps one FIFO queue per tenant and a single dispatcher task on the event loop. Each
time the worker is free it asks the ``FairnessPolicy`` whose head request runs next (and, for batchable
models, whose fill the remaining slots of the batch), drops requests whose deadline passed or whose
client left, runs the work on one worker thread and charges each tenant for the time it really used.

One worker because a model on one device gains nothing from concurrent forward passes (they contend for
the same cores or GPU) and because ordering is then entirely the policy's choice. Decisions are made as
late as possible, when the worker frees up, so a request that arrives while another runs can still
overtake queued ones if its tenant is owed service.

All state lives on the event loop thread; only ``work`` runs on the worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from inference_images.runtime.scheduling.admission import Admission
from inference_images.runtime.scheduling.batching import (
    NO_BATCHING,
    BatchingConfig,
    BatchItem,
    batch_runner,
    batchable,
)
from inference_images.runtime.scheduling.interface import (
    ClientGoneError,
    DeadlineExceededError,
    FairnessPolicy,
    Head,
    Outcome,
    QueueFullError,
    SchedulerClosedError,
    SchedulerEvents,
    ServiceObserver,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# Until a model has been measured, assume a request costs this much worker time (seconds).
_INITIAL_JOB_S = 0.005
# Weight of the newest measurement in the running estimates.
_EWMA_ALPHA = 0.2


@dataclass(eq=False, slots=True)
class _Job:
    tenant: str
    weight: float
    cost: float
    work: Callable[[], Any]
    future: asyncio.Future[Any]
    seq: int
    enqueued: float
    deadline: float | None
    gone: Callable[[], bool] | None
    batch: BatchItem | None
    # Estimated service charged when picked; corrected by the measurement after it runs.
    charged: float = 0.0


class _NoEvents:
    def observe_service(self, tenant: str, seconds: float) -> None:
        pass

    def observe_wait(self, tenant: str, seconds: float) -> None:
        pass

    def observe_outcome(self, tenant: str, outcome: Outcome) -> None:
        pass

    def observe_depth(self, tenant: str, depth: int) -> None:
        pass

    def observe_batch(self, model: str, size: int) -> None:
        pass


@dataclass(slots=True)
class _Estimates:
    """Running estimates of worker time: per request overall, and per unit of cost hint per model."""

    job_s: float = _INITIAL_JOB_S
    per_unit: dict[Any, float] = field(default_factory=dict)

    def estimate(self, job: _Job) -> float:
        rate = self.per_unit.get(_key(job))
        return self.job_s if rate is None else rate * max(job.cost, 1.0)

    def update(self, jobs: Sequence[_Job], elapsed: float) -> None:
        self.job_s += _EWMA_ALPHA * (elapsed / len(jobs) - self.job_s)
        key = _key(jobs[0])
        rate = elapsed / sum(max(job.cost, 1.0) for job in jobs)
        old = self.per_unit.get(key)
        self.per_unit[key] = rate if old is None else old + _EWMA_ALPHA * (rate - old)


def _key(job: _Job) -> Any:
    return job.batch.key if job.batch is not None else None


def _timed(work: Callable[[], Any]) -> tuple[float, Any, BaseException | None]:
    start = time.perf_counter()
    try:
        result = work()
    except Exception as exc:
        return time.perf_counter() - start, None, exc
    return time.perf_counter() - start, result, None


class QueueScheduler:
    """Per-tenant bounded queues served in the order a ``FairnessPolicy`` picks, on one worker thread."""

    def __init__(
        self,
        policy: FairnessPolicy,
        *,
        observer: ServiceObserver | None = None,
        events: SchedulerEvents | None = None,
        admission: Admission | None = None,
        batching: BatchingConfig = NO_BATCHING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._observer = observer
        self._events: SchedulerEvents = events or _NoEvents()
        self._admission = admission or Admission()
        self._batching = batching
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-worker")
        # Only tenants with something queued have an entry, so the keys are the backlogged tenants.
        self._queues: dict[str, deque[_Job]] = {}
        self._running = 0
        self._seq = itertools.count()
        self._estimates = _Estimates()
        self._closed = False
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # -- the server's side -----------------------------------------------------------------------------

    async def submit(
        self,
        tenant: str,
        weight: float,
        cost_hint: float,
        work: Callable[[], T],
        *,
        max_queue: int | None = None,
        deadline: float | None = None,
        gone: Callable[[], bool] | None = None,
        batch: BatchItem | None = None,
    ) -> T:
        if self._closed:
            raise SchedulerClosedError("scheduler is closed")
        wake = self._start()
        queued = len(self._queues.get(tenant, ()))
        limit = self._admission.limit(max_queue)
        if queued >= limit:
            self._events.observe_outcome(tenant, Outcome.REJECTED_QUEUE_FULL)
            retry = self._admission.retry_after(queued, self._estimates.job_s, self._share(tenant, weight))
            raise QueueFullError(tenant, limit, retry)
        job = _Job(
            tenant=tenant,
            weight=weight,
            cost=cost_hint,
            work=work,
            future=asyncio.get_running_loop().create_future(),
            seq=next(self._seq),
            enqueued=self._clock(),
            deadline=deadline,
            gone=gone,
            batch=batch,
        )
        queue = self._queues.get(tenant)
        if queue is None:
            self.policy.joined(tenant, weight, list(self._queues))
            queue = self._queues[tenant] = deque()
        queue.append(job)
        self._events.observe_depth(tenant, len(queue))
        wake.set()
        try:
            result: T = await job.future
            return result
        except asyncio.CancelledError:
            if self._withdraw(job):
                self._events.observe_outcome(tenant, Outcome.CANCELLED)
            raise

    def queue_depth(self) -> int:
        return sum(len(q) for q in self._queues.values()) + self._running

    def tenant_depths(self) -> dict[str, int]:
        return {tenant: len(queue) for tenant, queue in self._queues.items()}

    async def close(self) -> None:
        self._closed = True
        if self._dispatcher is not None and self._wake is not None:
            self._wake.set()
            # Whatever was queued before close still runs.
            await asyncio.shield(self._dispatcher)
        # Joining the worker blocks, so do it off the loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    # -- queues ----------------------------------------------------------------------------------------

    def _start(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="scheduler")
            self._dispatcher.add_done_callback(_log_crash)
        return self._wake

    def _share(self, tenant: str, weight: float) -> float:
        others = sum(q[0].weight for t, q in self._queues.items() if t != tenant)
        return weight / (weight + others)

    def _remove_if_empty(self, tenant: str) -> None:
        queue = self._queues[tenant]
        self._events.observe_depth(tenant, len(queue))
        if not queue:
            del self._queues[tenant]
            self.policy.left(tenant)

    def _withdraw(self, job: _Job) -> bool:
        """Take a still-queued job out of its queue; False if it had already been picked."""
        queue = self._queues.get(job.tenant)
        if queue is None or job not in queue:
            return False
        queue.remove(job)
        self._remove_if_empty(job.tenant)
        return True

    def _drop_reason(self, job: _Job) -> tuple[Outcome, Exception] | None:
        if job.future.done():
            return Outcome.CANCELLED, ClientGoneError("request was withdrawn")
        if job.deadline is not None and self._clock() >= job.deadline:
            return Outcome.EXPIRED, DeadlineExceededError("the request's deadline passed while it was queued")
        if job.gone is not None and job.gone():
            return Outcome.CANCELLED, ClientGoneError("the client disconnected while the request was queued")
        return None

    def _pop_next(self, key: Any = None, match: bool = False) -> _Job | None:
        """The next live job in policy order (only jobs of batch ``key`` when ``match``), charged an estimate."""
        while True:
            heads = {
                tenant: Head(tenant, queue[0].weight, queue[0].seq, len(queue))
                for tenant, queue in self._queues.items()
                if not match or _key(queue[0]) == key
            }
            if not heads:
                return None
            tenant = self.policy.pick(heads)
            job = self._queues[tenant].popleft()
            self._remove_if_empty(tenant)
            dropped = self._drop_reason(job)
            if dropped is not None:
                outcome, error = dropped
                self._events.observe_outcome(tenant, outcome)
                if not job.future.done():
                    job.future.set_exception(error)
                continue
            self._events.observe_wait(tenant, self._clock() - job.enqueued)
            job.charged = self._estimates.estimate(job)
            self.policy.charge(tenant, job.weight, job.charged)
            return job

    # -- the worker ------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch(self._wake)
            if jobs is None:
                return
            live = [job for job in jobs if not job.future.done()]
            for job in jobs:
                if job.future.done():  # withdrawn while its batch was filling: it never runs
                    self._events.observe_outcome(job.tenant, Outcome.CANCELLED)
                    self.policy.charge(job.tenant, job.weight, -job.charged)
            if not live:
                continue
            if len(live) == 1:
                runner: Callable[[], Any] = live[0].work
            else:
                runner = batch_runner([job.batch for job in live if job.batch is not None])
            self._running = len(live)
            try:
                elapsed, result, error = await loop.run_in_executor(self._executor, _timed, runner)
            finally:
                self._running = 0
            self._settle(live, elapsed, result, error)

    async def _next_batch(self, wake: asyncio.Event) -> list[_Job] | None:
        """The next job and, for a batchable model, others of the same model; None once closed and empty."""
        while (first := self._pop_next()) is None:
            if self._closed:
                return None
            wake.clear()
            await wake.wait()
        batch = [first]
        if first.batch is None or not batchable(first.batch.model):
            return batch
        limit = self._batching.limit(first.batch.model.name)
        until = first.enqueued + limit.max_wait_s
        while len(batch) < limit.max_size:
            job = self._pop_next(_key(first), match=True)
            if job is not None:
                batch.append(job)
                continue
            remaining = until - self._clock()
            if remaining <= 0 or self._closed:
                break
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                break
        return batch

    def _settle(self, jobs: list[_Job], elapsed: float, result: Any, error: BaseException | None) -> None:
        """Charge each job its share of the measured time (by cost hint) and hand out the results."""
        costs = [max(job.cost, 0.0) for job in jobs]
        total = sum(costs)
        for i, job in enumerate(jobs):
            share = elapsed * costs[i] / total if total > 0 else elapsed / len(jobs)
            self.policy.charge(job.tenant, job.weight, share - job.charged)
            if self._observer is not None:
                self._observer(job.tenant, share)
            self._events.observe_service(job.tenant, share)
            if job.future.done():
                outcome = Outcome.CANCELLED  # its client left while it ran
            elif error is not None:
                job.future.set_exception(error)
                outcome = Outcome.ERROR
            else:
                job.future.set_result(result if len(jobs) == 1 else result[i])
                outcome = Outcome.OK
            self._events.observe_outcome(job.tenant, outcome)
        if jobs[0].batch is not None:
            self._events.observe_batch(jobs[0].batch.model.name, len(jobs))
        self._estimates.update(jobs, elapsed)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("scheduler dispatcher stopped", extra={"error_type": type(task.exception()).__name__})
