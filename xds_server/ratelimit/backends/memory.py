"""In-process counters: the embedded default for one gateway (`make run`). Not shared between
processes, so a region with several gateways uses Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xds_server.ratelimit.backends.base import Decision, Hit, gcra

# Swept when the table grows past this: an idle counter holds no information once its time has passed.
_SWEEP_AT = 100_000


def _monotonic_us() -> float:
    return time.monotonic_ns() / 1000


@dataclass
class MemoryBackend:
    name: str = "memory"
    clock_us: Callable[[], float] = _monotonic_us
    _tats: dict[str, float] = field(default_factory=dict)

    async def do_limit(self, hits: Sequence[Hit]) -> list[Decision]:
        # No await between reading and writing: on the event loop this is atomic.
        now = self.clock_us()
        steps = [gcra(self._tats.get(h.key, now), now, h) for h in hits]
        admit = all(d.allowed for _, d in steps)
        for hit, (tat, _) in zip(hits, steps, strict=True):
            if admit or hit.settle:
                self._tats[hit.key] = tat
        if len(self._tats) > _SWEEP_AT:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return [d for _, d in steps]

    async def close(self) -> None:
        self._tats.clear()
