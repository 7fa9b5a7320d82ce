"""The contracts of the scheduling package: what the server calls, what a fairness policy decides, and
what the scheduler reports.

Three seams, in the spirit of gateway-api-inference-extension's flow control:

- ``Scheduler``: the server's view. ``submit`` a piece of model work for a tenant and await its result.
- ``FairnessPolicy``: the only thing that differs between FIFO and weighted fair queuing. It is shown the
  head request of every backlogged tenant and picks whose runs next, and it is told what each tenant's
  work really cost. It never touches queues, threads or the clock.
- ``SchedulerEvents``: what happened to each request (waits, service, outcomes, depths), for metrics.

Everything here runs on the event loop thread, so policies need no locks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

T = TypeVar("T")

# Told (tenant, seconds of worker time) after each piece of work, whether it succeeded or raised.
ServiceObserver = Callable[[str, float], None]


class SchedulerClosedError(RuntimeError):
    """Work submitted after ``close()``: the replica is shutting down."""


class QueueFullError(Exception):
    """The tenant already has as many requests queued here as its bound allows; answered with 429."""

    def __init__(self, tenant: str, limit: int, retry_after_s: float) -> None:
        super().__init__(
            f"tenant '{tenant}' already has {limit} requests queued on this replica (its bound); retry later"
        )
        self.tenant = tenant
        self.limit = limit
        self.retry_after_s = retry_after_s


class DeadlineExceededError(Exception):
    """The request's deadline passed while it waited; it never reached the model."""


class ClientGoneError(Exception):
    """The client disconnected while the request waited; it never reached the model."""


class Outcome(StrEnum):
    """How a submitted request ended, as counted per tenant."""

    OK = "ok"
    REJECTED_QUEUE_FULL = "rejected_queue_full"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Head:
    """What a policy may see of a tenant's oldest queued request."""

    tenant: str
    weight: float
    # Arrival order across all tenants: FIFO picks the smallest.
    seq: int
    queued: int


class FairnessPolicy(Protocol):
    """Decides whose request runs next. Implementations: ``fifo.FifoPolicy``, ``wfq.VirtualTimePolicy``."""

    name: ClassVar[str]

    def joined(self, tenant: str, weight: float, backlogged: Collection[str]) -> None:
        """``tenant`` had nothing queued and now has a request; ``backlogged`` are the others that do."""
        ...

    def left(self, tenant: str) -> None:
        """``tenant``'s queue just became empty."""
        ...

    def pick(self, heads: Mapping[str, Head]) -> str:
        """The tenant (a key of ``heads``, never empty) whose head request runs next."""
        ...

    def charge(self, tenant: str, weight: float, service: float) -> None:
        """Account ``service`` seconds of worker time to ``tenant`` (may be a negative correction)."""
        ...


class SchedulerEvents(Protocol):
    """Where the scheduler reports per-tenant facts; ``metrics.RuntimeMetrics`` implements it."""

    def observe_service(self, tenant: str, seconds: float) -> None: ...

    def observe_wait(self, tenant: str, seconds: float) -> None: ...

    def observe_outcome(self, tenant: str, outcome: Outcome) -> None: ...

    def observe_depth(self, tenant: str, depth: int) -> None: ...

    def observe_batch(self, model: str, size: int) -> None: ...


class Scheduler(Protocol):
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
        batch: Any = None,
    ) -> T:
        """Run ``work`` (blocking, off the event loop) when the policy allows; return its result.

        ``weight`` is the tenant's fair share (> 0), ``cost_hint`` the model's up-front estimate of the
        work in its own unit. ``max_queue`` bounds the tenant's queued requests (QueueFullError past it),
        ``deadline`` (``time.monotonic()`` seconds) and ``gone`` (client disconnected?) drop the request
        before it runs; ``batch`` (a ``batching.BatchItem``) lets it share a forward pass with others.
        Cancelling the returned awaitable before the work starts withdraws it.
        """
        ...

    def queue_depth(self) -> int:
        """Requests waiting on the scheduler (queued plus running)."""
        ...

    def tenant_depths(self) -> dict[str, int]:
        """Requests queued (not running) per tenant that has any."""
        ...

    def charge(self, tenant: str, seconds: float, weight: float) -> None:
        """Bill ``tenant`` for ``seconds`` of work done outside the worker on its behalf (loading one of its
        own models), as if its requests had used the worker that long. FIFO ignores it."""
        ...

    async def close(self) -> None:
        """Refuse new work, let what is queued finish, and release the worker."""
        ...
