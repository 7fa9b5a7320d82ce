"""Weighted fair queuing by virtual time, after the Virtual Token Counter (Sheng et al., "Fairness in
Serving Large Language Models", OSDI 2024).

Each tenant has a counter: the service it has received divided by its weight. The backlogged tenant with
the smallest counter runs next, so among tenants that all have work queued, service converges to the
ratio of their weights. What is charged is the work really done (measured worker seconds; a batch's time
is split among its requests by their cost), not the number of requests, so a tenant sending large inputs
cannot hide behind a small request count.

Idle time earns no credit: a tenant that (re)joins the backlog is lifted to the smallest counter among
the tenants already backlogged (or, if none is, to the counter of the last tenant whose queue emptied).
Without the lift, a tenant idle for an hour would return with an hour of credit and starve everyone
else until it had spent it. With it, the most a returning tenant can be ahead of a backlogged one is
one request's cost.

Ties (a tenant just lifted to the level of the one it joins) go to the tenant with fewer requests
queued, then to the older request: the light tenant's single request goes before the flooding tenant's
next one, at no cost to fairness, since both are then charged for what they get.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import ClassVar

from inference_images.runtime.scheduling.interface import Head


class VirtualTimePolicy:
    name: ClassVar[str] = "wfq"

    def __init__(self) -> None:
        self._counters: dict[str, float] = {}
        # Where a tenant joining an empty backlog starts: the counter of the last tenant to go idle.
        self._floor = 0.0

    def counter(self, tenant: str) -> float:
        """The tenant's virtual counter (weight-normalised service seconds), for tests and debugging."""
        return self._counters.get(tenant, self._floor)

    def joined(self, tenant: str, weight: float, backlogged: Collection[str]) -> None:
        others = [self._counters.get(t, self._floor) for t in backlogged if t != tenant]
        level = min(others) if others else self._floor
        self._counters[tenant] = max(self._counters.get(tenant, level), level)

    def left(self, tenant: str) -> None:
        # The floor only rises, so an idle tenant's counter would be lifted to at least the floor on return
        # anyway: forgetting it keeps memory bounded by the backlogged tenants, not every tenant ever seen.
        self._floor = max(self._floor, self._counters.pop(tenant, self._floor))

    def pick(self, heads: Mapping[str, Head]) -> str:
        return min(heads.values(), key=lambda h: (self.counter(h.tenant), h.queued, h.seq)).tenant

    def charge(self, tenant: str, weight: float, service: float) -> None:
        self._counters[tenant] = self.counter(tenant) + service / weight
