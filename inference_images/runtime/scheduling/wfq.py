"""Weighted fair queuing by virtual time, after the Virtual Token Counter (Sheng et al., "Fairness in
Serving Large Language Models", OSDI 2024).

Each tenant has a counter: the service it has received divided by its weight. The backlogged tenant with
the smallest counter runs next, so among tenants that all have work queued, service converges to the
ratio of their weights. What is charged is the work really done (measured worker seconds; a batch's time
is split among its requests by their cost), not the number of requests, so a tenant sending large inputs
cannot hide behind a small request count.

Idle time earns only a bounded credit. A tenant that (re)joins the backlog is lifted to the system's
virtual time (the smallest counter among the tenants backlogged, as it has risen; if none is, the
counter of the last tenant whose queue emptied) minus ``idle_credit_s``. With no lift, a tenant idle for
an hour would return with an hour of credit and starve everyone else until it had spent it. With VTC's
exact lift (credit 0), a tenant that stays within its share but arrives in bursts is served at only its
share during each burst, which under a flood is several times slower than alone. The small credit (like
the bounded "sleeper credit" of fair CPU schedulers) lets such a burst run ahead by at most
``idle_credit_s`` of weight-normalised service; a tenant that stays backlogged (a flood) never rejoins,
so it never gets any.

Ties go to the tenant with fewer requests queued, then to the older request.

Work done for a tenant off the worker is charged the same way (``Scheduler.charge``): the seconds it took
to load one of the tenant's own models, so a tenant cycling through cold models pays for its loads in
later service, and nobody else does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import ClassVar

from inference_images.runtime.scheduling.interface import Head

# Seconds of weight-normalised service a returning tenant may run ahead of the backlogged ones.
DEFAULT_IDLE_CREDIT_S = 0.1
# Idle tenants' counters are forgotten in bulk once there are this many more of them than backlogged ones.
_PRUNE_AFTER = 4096


class VirtualTimePolicy:
    name: ClassVar[str] = "wfq"

    def __init__(self, idle_credit_s: float = DEFAULT_IDLE_CREDIT_S) -> None:
        if idle_credit_s < 0:
            raise ValueError(f"idle credit must not be negative, got {idle_credit_s}")
        self.idle_credit_s = idle_credit_s
        self._counters: dict[str, float] = {}
        self._backlogged: set[str] = set()
        # System virtual time: the smallest backlogged counter as it has risen (or, once the backlog
        # empties, the counter of the last tenant to leave). It never falls, so credits do not stack:
        # every tenant joining at the same moment starts at the same place.
        self._vtime = 0.0

    def counter(self, tenant: str) -> float:
        """The tenant's virtual counter (weight-normalised service seconds), for tests and debugging."""
        return self._counters.get(tenant, self._vtime - self.idle_credit_s)

    def _advance(self) -> None:
        if self._backlogged:
            self._vtime = max(self._vtime, min(self._counters[t] for t in self._backlogged))

    def joined(self, tenant: str, weight: float, backlogged: Collection[str]) -> None:
        self._advance()
        start = self._vtime - self.idle_credit_s
        self._counters[tenant] = max(self._counters.get(tenant, start), start)
        self._backlogged.add(tenant)

    def left(self, tenant: str) -> None:
        self._backlogged.discard(tenant)
        if self._backlogged:
            self._advance()
        else:
            self._vtime = max(self._vtime, self.counter(tenant))
        if len(self._counters) > len(self._backlogged) + _PRUNE_AFTER:
            # A counter at or below where a returning tenant would start anyway carries nothing.
            start = self._vtime - self.idle_credit_s
            for idle in [t for t, c in self._counters.items() if c <= start and t not in self._backlogged]:
                del self._counters[idle]

    def pick(self, heads: Mapping[str, Head]) -> str:
        self._advance()
        return min(heads.values(), key=lambda h: (self.counter(h.tenant), h.queued, h.seq)).tenant

    def charge(self, tenant: str, weight: float, service: float) -> None:
        counter = self.counter(tenant)
        if service > 0 and tenant not in self._backlogged:
            # Work billed while the tenant has nothing queued (loading its own model): start from where it
            # would rejoin, or the lift on its next request would absorb the charge.
            self._advance()
            counter = max(counter, self._vtime - self.idle_credit_s)
        self._counters[tenant] = counter + service / weight
