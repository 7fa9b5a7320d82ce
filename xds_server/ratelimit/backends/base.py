"""The limiter interface: apply a request's hits to their counters atomically, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class BackendUnavailable(Exception):
    """The counters cannot be read or written now (Redis down, slow or refusing)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """`cost` units against the GCRA counter `key`.

    A check (`settle` False) is admitted only if it fits; a settlement is always applied, and may be
    negative (a refund), because it reports work that has already happened.
    """

    key: str
    interval_us: float  # microseconds per unit
    tolerance_us: float  # burst * interval: how far ahead of now the counter may run
    cost: float
    settle: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # units that would still be admitted at once after this hit
    wait_us: int  # until this hit would be admitted (0 when it was)
    reset_us: int  # until the counter is back to a full burst


class Backend(Protocol):
    name: str

    async def do_limit(self, hits: Sequence[Hit]) -> list[Decision]:
        """One decision per hit. If any check does not fit, no check is applied (settlements are);
        so a request refused on one limit does not spend another."""
        ...

    async def close(self) -> None: ...


def gcra(tat_us: float, now_us: float, hit: Hit) -> tuple[float, Decision]:
    """The GCRA step both backends run (Redis runs the same arithmetic in Lua): the counter's new
    theoretical arrival time and the decision. `tat_us` is the stored time, or `now_us` if none."""
    tat = max(tat_us, now_us)
    new_tat = max(tat + hit.cost * hit.interval_us, now_us)
    ahead = new_tat - now_us
    allowed = hit.settle or ahead <= hit.tolerance_us
    if not allowed:
        # Refused: the counter stays at `tat`; report how long until this hit would fit.
        wait = ahead - hit.tolerance_us
        return tat, Decision(False, max(0, int((hit.tolerance_us - (tat - now_us)) // hit.interval_us)),
                             int(wait) + 1, int(tat - now_us))
    remaining = max(0, int((hit.tolerance_us - ahead) // hit.interval_us))
    return new_tat, Decision(True, remaining, 0, int(ahead))
