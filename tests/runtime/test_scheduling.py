"""The FIFO scheduler: arrival order, one worker thread off the loop, service time, close."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inference_images.runtime.scheduling import FifoScheduler, SchedulerClosedError


def test_runs_in_arrival_order_on_one_worker_thread() -> None:
    observed: list[tuple[str, float]] = []
    order: list[int] = []
    threads: set[int] = set()

    def work(i: int) -> int:
        threads.add(threading.get_ident())
        order.append(i)
        return i * 10

    async def main() -> list[int]:
        scheduler = FifoScheduler(observer=lambda tenant, s: observed.append((tenant, s)))
        results = await asyncio.gather(
            *(scheduler.submit(f"t{i % 2}", 1.0, 1.0, lambda i=i: work(i)) for i in range(20))
        )
        assert scheduler.queue_depth() == 0
        await scheduler.close()
        return list(results)

    assert asyncio.run(main()) == [i * 10 for i in range(20)]
    assert order == list(range(20))
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert len(observed) == 20 and {t for t, _ in observed} == {"t0", "t1"}


def test_errors_propagate_and_are_still_timed() -> None:
    observed: list[str] = []

    def boom() -> None:
        raise RuntimeError("model exploded")

    async def main() -> None:
        scheduler = FifoScheduler(observer=lambda tenant, _: observed.append(tenant))
        with pytest.raises(RuntimeError, match="model exploded"):
            await scheduler.submit("acme", 1.0, 1.0, boom)
        await scheduler.close()
        with pytest.raises(SchedulerClosedError):
            await scheduler.submit("acme", 1.0, 1.0, lambda: None)

    asyncio.run(main())
    assert observed == ["acme"]
