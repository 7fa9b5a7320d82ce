"""Where model work waits and runs: per-tenant bounded queues, a fairness policy, batching, one worker.

The server hands every prediction to a ``Scheduler`` with the tenant's identity, its fair-share weight,
a cost estimate, its queue bound and deadline; the scheduler decides when it runs. The package splits
like gateway-api-inference-extension's flow control:

- ``interface``: the contracts (``Scheduler``, ``FairnessPolicy``, ``SchedulerEvents``, errors, outcomes);
- ``fifo`` and ``wfq``: the two policies (arrival order, and virtual-time weighted fair queuing);
- ``admission``: the per-tenant queue bound and the Retry-After estimate;
- ``batching``: per-model batch limits, merging and splitting tensors;
- ``controller``: the queues and the single worker every policy shares;
- this module: the registry of policies by name (``--scheduler fifo|wfq``).

See docs/fairness.md and docs/design/0002-weighted-fair-queuing.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inference_images.runtime.scheduling.admission import DEFAULT_MAX_QUEUE, Admission
from inference_images.runtime.scheduling.batching import NO_BATCHING, BatchingConfig, BatchItem, BatchLimit
from inference_images.runtime.scheduling.controller import QueueScheduler
from inference_images.runtime.scheduling.fifo import FifoPolicy
from inference_images.runtime.scheduling.interface import (
    ClientGoneError,
    DeadlineExceededError,
    FairnessPolicy,
    Head,
    Outcome,
    QueueFullError,
    Scheduler,
    SchedulerClosedError,
    SchedulerEvents,
    ServiceObserver,
)
from inference_images.runtime.scheduling.wfq import DEFAULT_IDLE_CREDIT_S, VirtualTimePolicy

__all__ = [
    "DEFAULT_IDLE_CREDIT_S",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_POLICY",
    "NO_BATCHING",
    "POLICIES",
    "Admission",
    "BatchItem",
    "BatchLimit",
    "BatchingConfig",
    "ClientGoneError",
    "DeadlineExceededError",
    "FairnessPolicy",
    "FifoScheduler",
    "Head",
    "Outcome",
    "PolicyOptions",
    "QueueFullError",
    "QueueScheduler",
    "Scheduler",
    "SchedulerClosedError",
    "SchedulerEvents",
    "ServiceObserver",
    "WfqScheduler",
    "build_scheduler",
]


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """What policies may be tuned by; each takes what concerns it."""

    # wfq: seconds of weight-normalised service a returning tenant may run ahead of the backlogged ones.
    idle_credit_s: float = DEFAULT_IDLE_CREDIT_S


# Policies by the name the command line uses.
POLICIES: dict[str, Callable[[PolicyOptions], FairnessPolicy]] = {
    FifoPolicy.name: lambda options: FifoPolicy(),
    VirtualTimePolicy.name: lambda options: VirtualTimePolicy(options.idle_credit_s),
}
DEFAULT_POLICY = VirtualTimePolicy.name


class FifoScheduler(QueueScheduler):
    """First come, first served across tenants (the baseline). Same queues, bounds and worker as WFQ."""

    def __init__(self, observer: ServiceObserver | None = None, **kwargs: object) -> None:
        super().__init__(FifoPolicy(), observer=observer, **kwargs)  # type: ignore[arg-type]


class WfqScheduler(QueueScheduler):
    """Weighted fair queuing by virtual time (VTC): backlogged tenants share the worker by weight."""

    def __init__(self, observer: ServiceObserver | None = None, **kwargs: object) -> None:
        super().__init__(VirtualTimePolicy(), observer=observer, **kwargs)  # type: ignore[arg-type]


def build_scheduler(
    policy: str,
    *,
    events: SchedulerEvents | None = None,
    admission: Admission | None = None,
    batching: BatchingConfig = NO_BATCHING,
    options: PolicyOptions | None = None,
) -> QueueScheduler:
    """The scheduler for a policy name; a name not in ``POLICIES`` is a ValueError listing the known ones."""
    try:
        make = POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown scheduler policy {policy!r} (known: {', '.join(sorted(POLICIES))})") from None
    return QueueScheduler(make(options or PolicyOptions()), events=events, admission=admission, batching=batching)
