"""First come, first served across all tenants: the baseline the fair policy is measured against.

Weights and costs are ignored by design, so one tenant that sends ten times more gets ten times the
worker, and everyone else waits behind its queue.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import ClassVar

from inference_images.runtime.scheduling.interface import Head


class FifoPolicy:
    name: ClassVar[str] = "fifo"

    def joined(self, tenant: str, weight: float, backlogged: Collection[str]) -> None:
        pass

    def left(self, tenant: str) -> None:
        pass

    def pick(self, heads: Mapping[str, Head]) -> str:
        return min(heads.values(), key=lambda head: head.seq).tenant

    def charge(self, tenant: str, weight: float, service: float) -> None:
        pass
