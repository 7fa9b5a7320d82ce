"""The queueing machinery every policy shares: per-tenant queues, admission, batching, one worker.

``QueueScheduler`` keeps one FIFO queue per tenant and one worker thread. Each time the worker is free
it asks the ``FairnessPolicy`` whose head request runs next (and, for batchable models, whose fill the
remaining slots of the batch), drops requests whose deadline passed or whose client left, runs the work
and charges each tenant for the time it really used.

Deadlines are kept at three points. A request is refused before it is queued when its deadline has
passed, its client is gone, or its cost is known and larger than the time it has left (the estimate is
the model's cheapest measured time per unit of cost hint among its recent runs, so it errs towards
running); it is dropped when picked for the same reasons; and a large request runs in calls of the
model's ``chunk_rows`` (``batching.BatchRun``), between which it stops once nobody waits for it.

Between two such calls of a request running alone the policy picks again: when another tenant is now
owed service the request goes back to the head of its queue, charged what it ran, and resumes there.

One worker because a model on one device gains nothing from concurrent forward passes (they contend for
the same cores or GPU) and because ordering is then entirely the policy's choice. Decisions are made as
late as possible, when the worker frees up, so a request that arrives while another runs can still
overtake queued ones if its tenant is owed service. The worker decides by itself, under a lock, instead
of asking the event loop: a loop busy parsing a flood of requests would otherwise leave the device idle
between two requests (measured: a fifth of its capacity under the benchmark's flood). Submitting and
handing out results stay on the loop (``call_soon_threadsafe``); policies are only called under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from inference_images.runtime.scheduling.admission import Admission
from inference_images.runtime.scheduling.batching import (
    NO_BATCHING,
    BatchingConfig,
    BatchItem,
    BatchRun,
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

# Until a model has been measured, assume a request costs this much worker time (seconds).
_INITIAL_JOB_S = 0.005
# Weight of the newest measurement in the running estimates.
_EWMA_ALPHA = 0.2
# A model's cost counts as known (for refusing work that cannot finish in time) after this many runs; its
# floor estimate is the cheapest rate among the last _RECENT_RUNS at least 1/_EXTRAPOLATION of the job's size.
_MIN_RUNS = 3
_RECENT_RUNS = 32
_EXTRAPOLATION = 4.0


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
    # Set (under the lock) when its submitter was cancelled: never run it.
    withdrawn: bool = False
    # Set by the worker when it stopped the job between two predict calls: why.
    dropped: tuple[Outcome, Exception] | None = None
    # A request run in several predict calls that the worker put back between two of them (another
    # tenant was owed service): where it stands, and the worker seconds it has used so far.
    resumed: BatchRun | None = None
    ran: float = 0.0


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
    recent: dict[Any, deque[tuple[float, float]]] = field(default_factory=dict)  # (rate, units) per run

    def estimate(self, job: _Job) -> float:
        rate = self.per_unit.get(_key(job))
        return self.job_s if rate is None else rate * max(job.cost, 1.0)

    def floor(self, job: _Job) -> float | None:
        """Worker seconds the job needs at the least, when its model's cost is known at its size; else None.

        A run's rate (seconds per unit) carries its call's fixed cost spread over its units, so a run much
        smaller than the job overstates the job's need without bound: a model measured only on 1-character
        texts "needed" minutes for a 3 MB one that takes half a second, and another tenant's tiny requests
        made it so. Only runs of at least 1/_EXTRAPOLATION of the job's units count (then the floor is over
        by at most _EXTRAPOLATION - 1 calls' fixed cost); with none, nothing is refused on an estimate."""
        key = _key(job)
        runs = self.recent.get(key)
        if key is None or runs is None or len(runs) < _MIN_RUNS:
            return None
        units = max(job.cost, 1.0)
        rates = [rate for rate, size in runs if size * _EXTRAPOLATION >= units]
        return min(rates) * units if rates else None

    def update(self, jobs: Sequence[_Job], elapsed: float) -> None:
        self.job_s += _EWMA_ALPHA * (elapsed / len(jobs) - self.job_s)
        key = _key(jobs[0])
        units = sum(max(job.cost, 1.0) for job in jobs)
        rate = elapsed / units
        old = self.per_unit.get(key)
        self.per_unit[key] = rate if old is None else old + _EWMA_ALPHA * (rate - old)
        if key is not None:
            self.recent.setdefault(key, deque(maxlen=_RECENT_RUNS)).append((rate, units))


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
        # Guards everything below; the worker waits on it for work.
        self._cond = threading.Condition()
        # Only tenants with something queued have an entry, so the keys are the backlogged tenants.
        self._queues: dict[str, deque[_Job]] = {}
        self._running = 0
        self._seq = itertools.count()
        self._estimates = _Estimates()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the server's side (event loop thread) ---------------------------------------------------------

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
        loop = asyncio.get_running_loop()
        job = _Job(
            tenant=tenant,
            weight=weight,
            cost=cost_hint,
            work=work,
            future=loop.create_future(),
            seq=0,
            enqueued=self._clock(),
            deadline=deadline,
            gone=gone,
            batch=batch,
        )
        limit = self._admission.limit(max_queue)
        with self._cond:
            if self._closed:
                raise SchedulerClosedError("scheduler is closed")
            self._start(loop)
            refusal = self._drop_reason(job, queued=False)
            queue = self._queues.get(tenant)
            queued = len(queue) if queue is not None else 0
            if refusal is not None:
                retry = None
            elif queued >= limit:
                retry = self._admission.retry_after(queued, self._estimates.job_s, self._share(tenant, weight))
            else:
                retry = None
                job.seq = next(self._seq)
                if queue is None:
                    self.policy.joined(tenant, weight, list(self._queues))
                    queue = self._queues[tenant] = deque()
                queue.append(job)
                self._events.observe_depth(tenant, len(queue))
                self._cond.notify()
        if refusal is not None:
            self._events.observe_outcome(tenant, refusal[0])
            raise refusal[1]
        if retry is not None:
            self._events.observe_outcome(tenant, Outcome.REJECTED_QUEUE_FULL)
            raise QueueFullError(tenant, limit, retry)
        try:
            result: T = await job.future
            return result
        except asyncio.CancelledError:
            with self._cond:
                job.withdrawn = True
                withdrawn = self._withdraw(job)
            if withdrawn:
                self._events.observe_outcome(tenant, Outcome.CANCELLED)
            raise

    def queue_depth(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values()) + self._running

    def tenant_depths(self) -> dict[str, int]:
        with self._cond:
            return {tenant: len(queue) for tenant, queue in self._queues.items()}

    def charge(self, tenant: str, seconds: float, weight: float) -> None:
        with self._cond:
            self.policy.charge(tenant, weight, seconds)

    async def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None:
            # Whatever was queued before close still runs; joining blocks, so do it off the loop, which
            # keeps running to hand out the last results.
            await asyncio.to_thread(worker.join)

    # -- queues (callers hold the lock) ----------------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None:
            self._loop = loop
            self._worker = threading.Thread(target=self._work_loop, name="model-worker", daemon=True)
            self._worker.start()

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

    def _drop_reason(self, job: _Job, queued: bool = True) -> tuple[Outcome, Exception] | None:
        """Why the job must not start (callers hold the lock): withdrawn, past or too near its deadline
        for its known cost, or its client gone."""
        where = "while it was queued" if queued else "before it was queued"
        if job.withdrawn:
            return Outcome.CANCELLED, ClientGoneError("request was withdrawn")
        if job.deadline is not None:
            left = job.deadline - self._clock()
            if left <= 0:
                return Outcome.EXPIRED, DeadlineExceededError(f"the request's deadline passed {where}")
            needs = self._estimates.floor(job)
            if needs is not None and needs > left and job.batch is not None:
                return Outcome.EXPIRED, DeadlineExceededError(
                    f"the request cannot finish before its deadline: model '{job.batch.model.name}' needs "
                    f"about {needs:.3g} s for it (measured on its recent requests) and {left:.3g} s are left"
                )
        if job.gone is not None and job.gone():
            return Outcome.CANCELLED, ClientGoneError(f"the client disconnected {where}")
        return None

    def _still_wanted(self, job: _Job) -> bool:
        """Between two predict calls (worker thread): whether the job is worth its next call."""
        if job.withdrawn:
            job.dropped = Outcome.CANCELLED, ClientGoneError("request was withdrawn")
        elif job.deadline is not None and self._clock() >= job.deadline:
            job.dropped = Outcome.EXPIRED, DeadlineExceededError(
                "the request's deadline passed while it ran; it was stopped before its remaining rows"
            )
        elif job.gone is not None and job.gone():
            job.dropped = Outcome.CANCELLED, ClientGoneError(
                "the client disconnected while the request ran; it was stopped before its remaining rows"
            )
        return job.dropped is None

    def _still_wanted_at(self, jobs: list[_Job], index: int) -> bool:
        return self._still_wanted(jobs[index])

    def _pop_next(
        self, dropped: list[tuple[_Job, Outcome, Exception]], key: Any = None, match: bool = False
    ) -> _Job | None:
        """The next live job in policy order (only jobs of batch ``key`` when ``match``), charged an
        estimate; jobs found dead on the way go to ``dropped``."""
        while True:
            heads = {
                tenant: Head(tenant, queue[0].weight, queue[0].seq, len(queue))
                for tenant, queue in self._queues.items()
                if not match or (_key(queue[0]) == key and queue[0].resumed is None)
            }
            if not heads:
                return None
            tenant = self.policy.pick(heads)
            job = self._queues[tenant].popleft()
            self._remove_if_empty(tenant)
            reason = self._drop_reason(job)
            if reason is not None:
                dropped.append((job, *reason))
                continue
            if job.resumed is not None:
                return job  # charged for what it ran, call by call: no estimate, and its wait was counted
            self._events.observe_wait(tenant, self._clock() - job.enqueued)
            job.charged = self._estimates.estimate(job)
            self.policy.charge(tenant, job.weight, job.charged)
            return job

    def _next_batch(self, dropped: list[tuple[_Job, Outcome, Exception]]) -> list[_Job] | None:
        """The next job and, for a batchable model, others of the same model; None once closed and empty.

        Waits on the condition (releasing the lock) for work, and for company up to the batch's wait."""
        while (first := self._pop_next(dropped)) is None:
            if self._closed:
                return None
            if dropped:
                return []  # hand the dropped ones back before sleeping
            self._cond.wait()
        batch = [first]
        if first.batch is None or not batchable(first.batch.model) or first.resumed is not None:
            return batch
        limit = self._batching.limit(first.batch.model.name)
        until = first.enqueued + limit.max_wait_s
        while len(batch) < limit.max_size:
            job = self._pop_next(dropped, _key(first), match=True)
            if job is not None:
                batch.append(job)
                continue
            remaining = until - self._clock()
            if remaining <= 0 or self._closed:
                break
            self._cond.wait(remaining)
        return batch

    # -- the worker thread -----------------------------------------------------------------------------

    def _work_loop(self) -> None:
        """Pick, run, charge, repeat; deciding on the worker itself, so a busy event loop never leaves the
        device idle between two requests."""
        while True:
            dropped: list[tuple[_Job, Outcome, Exception]] = []
            with self._cond:
                jobs = self._next_batch(dropped)
                self._running = len(jobs or ())
            if dropped:
                self._hand_back(functools.partial(self._fail, dropped))
            if jobs is None:
                return
            if not jobs:
                continue
            first = jobs[0].batch
            if first is not None and batchable(first.model):
                self._run_calls(jobs)
                continue
            elapsed, result, error = _timed(jobs[0].work)
            self._charge(jobs, elapsed, elapsed)
            self._hand_back(functools.partial(self._settle, jobs, result, error))

    def _run_calls(self, jobs: list[_Job]) -> None:
        """Batches, and requests that may run in several predict calls: stoppable between two calls, and a
        request alone on the worker is put back at the head of its queue there when the policy would now
        pick another tenant. Without that, one tenant's 1,024-text request held the replica for its whole
        run (23 s on a CPU pool) while a tenant owed service waited behind it."""
        run = jobs[0].resumed
        if run is None:
            items = [job.batch for job in jobs if job.batch is not None]
            run = BatchRun(items, functools.partial(self._still_wanted_at, jobs))
        jobs[0].resumed = None
        turn = 0.0
        error: BaseException | None = None
        while not run.done:
            elapsed, _, error = _timed(run.step)
            turn += elapsed
            if error is not None or run.done:
                break
            if len(jobs) == 1 and self._put_back(jobs[0], run, turn):
                return
        ran = turn + jobs[0].ran if len(jobs) == 1 else turn
        self._charge(jobs, turn, ran)
        result = None if error is not None else run.results()
        self._hand_back(functools.partial(self._settle, jobs, result, error))

    def _put_back(self, job: _Job, run: BatchRun, turn: float) -> bool:
        """Between two calls of a request running alone: if another tenant's head is now owed service,
        charge this turn, put the request back at the head of its queue and return True."""
        with self._cond:
            others = {tenant: Head(tenant, queue[0].weight, queue[0].seq, len(queue))
                      for tenant, queue in self._queues.items() if tenant != job.tenant}
            if not others or self._closed:
                return False
            own = self._queues.get(job.tenant)
            # Charged first, so the policy compares the work this request really did so far; `charged` is
            # then what this turn has been charged, which the turn's final charge corrects.
            self.policy.charge(job.tenant, job.weight, turn - job.charged)
            job.charged = turn
            mine = Head(job.tenant, job.weight, job.seq, 1 + (len(own) if own is not None else 0))
            if self.policy.pick({**others, job.tenant: mine}) == job.tenant:
                return False
            job.resumed, job.ran, job.charged = run, job.ran + turn, 0.0
            if own is None:
                self.policy.joined(job.tenant, job.weight, list(self._queues))
                own = self._queues[job.tenant] = deque()
            own.appendleft(job)
            self._events.observe_depth(job.tenant, len(own))
            self._running = 0
        if self._observer is not None:
            self._observer(job.tenant, turn)
        self._events.observe_service(job.tenant, turn)
        return True

    def _hand_back(self, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        # RuntimeError: the loop is gone (process stopping), and nobody waits for these results any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)

    def _charge(self, jobs: list[_Job], elapsed: float, ran: float) -> None:
        """Split the measured time among the jobs by cost hint and correct each one's estimated charge.
        `ran`: the worker seconds the jobs took in all (a request put back between calls ran in turns)."""
        costs = [max(job.cost, 0.0) for job in jobs]
        total = sum(costs)
        shares = [elapsed * c / total if total > 0 else elapsed / len(jobs) for c in costs]
        with self._cond:
            self._running = 0
            for job, share in zip(jobs, shares, strict=True):
                self.policy.charge(job.tenant, job.weight, share - job.charged)
            if not any(job.dropped for job in jobs):
                # A run cut short measures less than its jobs would cost: it would skew the estimates.
                self._estimates.update(jobs, ran)
        for job, share in zip(jobs, shares, strict=True):
            if self._observer is not None:
                self._observer(job.tenant, share)
            self._events.observe_service(job.tenant, share)
        if jobs[0].batch is not None:
            self._events.observe_batch(jobs[0].batch.model.name, len(jobs))

    # -- results (event loop thread) -------------------------------------------------------------------

    def _fail(self, dropped: list[tuple[_Job, Outcome, Exception]]) -> None:
        for job, outcome, error in dropped:
            self._events.observe_outcome(job.tenant, outcome)
            if not job.future.done():
                job.future.set_exception(error)

    def _settle(self, jobs: list[_Job], result: Any, error: BaseException | None) -> None:
        batched = jobs[0].batch is not None and batchable(jobs[0].batch.model)
        for i, job in enumerate(jobs):
            if job.future.done():
                outcome = Outcome.CANCELLED  # its client left while it ran
            elif error is not None:
                job.future.set_exception(error)
                outcome = Outcome.ERROR
            elif job.dropped is not None:
                outcome, dropped = job.dropped
                job.future.set_exception(dropped)
            else:
                job.future.set_result(result[i] if batched else result)
                outcome = Outcome.OK
            self._events.observe_outcome(job.tenant, outcome)
