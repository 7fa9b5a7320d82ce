"""Deadlines and departed clients in the scheduler, with real queues and a real worker: work nobody waits
for is refused before it is queued, dropped when picked, and stopped between two predict calls; work whose
known cost exceeds the time it has left is refused before it is queued."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

import pytest

from inference_images.runtime.models.base import ANY_DIM, Tensor, TensorSpec
from inference_images.runtime.scheduling import (
    BatchingConfig,
    BatchItem,
    BatchLimit,
    ClientGoneError,
    DeadlineExceededError,
    Outcome,
    WfqScheduler,
)
from inference_images.runtime.scheduling.batching import run_batch
from inference_images.runtime.tokens import Prediction, predict
from tests.runtime.test_scheduling_controller import Events, hold_worker, until


class Recorder:
    """A batchable model, FP32 x [n] -> y [n] = 2x, that records the rows of each call. With a gate, every
    call waits for it; with ``row_s``, each row takes that long (asleep, like a device)."""

    name, version, platform, device = "recorder", "v1", "test", "cpu"
    inputs = (TensorSpec("x", "FP32", (ANY_DIM,)),)
    outputs = (TensorSpec("y", "FP32", (ANY_DIM,)),)

    def __init__(self, row_s: float = 0.0, call_s: float = 0.0) -> None:
        self.calls: list[list[float]] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self.row_s = row_s
        self.call_s = call_s  # a call's fixed cost, whatever its rows

    def load(self) -> None:
        pass

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        x = inputs["x"]
        self.calls.append(list(x.data))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "gate never opened"
        time.sleep(self.call_s + self.row_s * x.shape[0])
        return [Tensor("y", "FP32", x.shape, [2 * v for v in x.data])]

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        return float(inputs["x"].shape[0])


def rows(*values: float) -> dict[str, Tensor]:
    return {"x": Tensor("x", "FP32", (len(values),), list(values))}


def submit(
    scheduler: WfqScheduler, model: Recorder, tenant: str, inputs: dict[str, Tensor], chunk: int | None = None,
    **kwargs: object,
) -> asyncio.Future[Prediction]:
    item = BatchItem(model, inputs, chunk)
    return asyncio.ensure_future(
        scheduler.submit(tenant, 1.0, model.cost_hint(inputs), lambda: predict(model, inputs), batch=item, **kwargs)  # type: ignore[arg-type]
    )


def test_a_large_request_runs_in_chunks_and_stops_once_its_deadline_passes() -> None:
    model = Recorder()
    model.gate = opened = threading.Event()
    now = [100.0]

    async def main() -> tuple[Events, BaseException | None]:
        events = Events()
        scheduler = WfqScheduler(events=events, clock=lambda: now[0])
        job = submit(scheduler, model, "t", rows(1, 2, 3, 4, 5, 6), chunk=2, deadline=110.0)
        await asyncio.to_thread(model.entered.wait, 30)
        now[0] = 120.0  # the deadline passes during the first call
        opened.set()
        error = None
        try:
            await job
        except DeadlineExceededError as exc:
            error = exc
        await scheduler.close()
        return events, error

    events, error = asyncio.run(main())
    assert model.calls == [[1, 2]]  # the remaining four rows never reached the model
    assert error is not None and "deadline passed while it ran" in str(error)
    assert events.outcomes[("t", Outcome.EXPIRED)] == 1


def test_a_batch_skips_the_rows_of_a_request_whose_client_left_and_finishes_the_others() -> None:
    model = Recorder()
    model.gate = opened = threading.Event()
    left = [False]

    async def main() -> tuple[Events, Prediction, BaseException | None]:
        events = Events()
        scheduler = WfqScheduler(events=events, batching=BatchingConfig({"recorder": BatchLimit(4)}))
        gate, held = await hold_worker(scheduler)
        leaving = submit(scheduler, model, "a", rows(1, 2, 3, 4), chunk=3, gone=lambda: left[0])
        staying = submit(scheduler, model, "b", rows(5, 6, 7), chunk=3)
        await until(lambda: sum(scheduler.tenant_depths().values()) == 2)
        gate.set()
        await held
        await asyncio.to_thread(model.entered.wait, 30)
        left[0] = True  # a's client leaves during the first call
        opened.set()
        result = await staying
        error = None
        try:
            await leaving
        except ClientGoneError as exc:
            error = exc
        await scheduler.close()
        return events, result, error

    events, result, error = asyncio.run(main())
    # One batch: calls of 3 rows; after the first, a's fourth row is skipped and b's rows still run.
    assert model.calls == [[1, 2, 3], [5, 6, 7]]
    assert result.outputs[0].data == [10, 12, 14] and result.outputs[0].shape == (3,)
    assert error is not None and "disconnected while the request ran" in str(error)
    assert events.outcomes[("a", Outcome.CANCELLED)] == 1 and events.outcomes[("b", Outcome.OK)] == 1


def test_chunks_give_the_same_answer_as_one_call() -> None:
    model = Recorder()
    items = [BatchItem(model, rows(1, 2, 3, 4, 5), 2), BatchItem(model, rows(), 2), BatchItem(model, rows(6, 7), 2)]
    results = run_batch(items)
    assert model.calls == [[1, 2], [3, 4], [5, 6], [7]]
    assert [r.outputs[0].data for r in results if r is not None] == [[2, 4, 6, 8, 10], [], [12, 14]]
    assert [r.outputs[0].shape for r in results if r is not None] == [(5,), (0,), (2,)]


def test_work_nobody_waits_for_is_refused_before_it_is_queued() -> None:
    model = Recorder()
    now = [100.0]

    async def main() -> Events:
        events = Events()
        scheduler = WfqScheduler(events=events, clock=lambda: now[0])
        with pytest.raises(DeadlineExceededError, match="passed before it was queued"):
            await submit(scheduler, model, "t", rows(1), deadline=99.0)
        with pytest.raises(ClientGoneError, match="disconnected before it was queued"):
            await submit(scheduler, model, "t", rows(2), gone=lambda: True)
        assert scheduler.queue_depth() == 0
        await scheduler.close()
        return events

    events = asyncio.run(main())
    assert model.calls == []
    assert events.outcomes[("t", Outcome.EXPIRED)] == 1 and events.outcomes[("t", Outcome.CANCELLED)] == 1


def test_a_request_whose_measured_cost_exceeds_its_time_left_is_refused_before_it_is_queued() -> None:
    # 10 ms a row, asleep: a measured rate can only be higher, so 100 rows need at least a second.
    model = Recorder(row_s=0.01)
    now = [100.0]

    async def main() -> tuple[Events, str]:
        events = Events()
        scheduler = WfqScheduler(events=events, clock=lambda: now[0])
        # Before the model is measured its cost is unknown: nothing is refused for it.
        for _ in range(3):
            await submit(scheduler, model, "t", rows(*range(30)), deadline=100.001)
        with pytest.raises(DeadlineExceededError) as refused:
            await submit(scheduler, model, "t", rows(*range(100)), deadline=100.5)
        assert scheduler.queue_depth() == 0
        # With time enough, the same kind of request runs.
        await submit(scheduler, model, "t", rows(*range(5)), deadline=200.0)
        await scheduler.close()
        return events, str(refused.value)

    events, reason = asyncio.run(main())
    assert len(model.calls) == 4 and len(model.calls[-1]) == 5  # the refused one never ran
    assert "cannot finish before its deadline" in reason and "model 'recorder'" in reason
    assert events.outcomes[("t", Outcome.EXPIRED)] == 1 and events.outcomes[("t", Outcome.OK)] == 4


def test_small_runs_are_no_evidence_against_a_far_larger_request() -> None:
    """A call's fixed cost spread over one row is a high rate per row: measured only on tiny requests (any
    tenant's), a model seemed to need 20 s for 1,000 rows that take as long as one. A request far larger
    than every recent run is not refused on an estimate; once runs near its size are measured, it is."""
    model = Recorder(call_s=0.02)
    now = [100.0]

    async def main() -> None:
        scheduler = WfqScheduler(clock=lambda: now[0])
        for _ in range(3):
            await submit(scheduler, model, "small", rows(1.0))
        await submit(scheduler, model, "large", rows(*range(1000)), deadline=101.0)  # 1 s left: runs
        await scheduler.close()
        # A model whose rows cost: measured at 300 rows (0.3 s), 1,000 need 1 s, and 0.5 s are left.
        scheduler, slow = WfqScheduler(clock=lambda: now[0]), Recorder(row_s=0.001)
        for _ in range(3):
            await submit(scheduler, slow, "t", rows(*range(300)))
        with pytest.raises(DeadlineExceededError, match="cannot finish before its deadline"):
            await submit(scheduler, slow, "t", rows(*range(1000)), deadline=100.5)
        await scheduler.close()

    asyncio.run(main())
    assert len(model.calls) == 4 and len(model.calls[-1]) == 1000


def test_a_queued_request_that_can_no_longer_finish_in_time_is_dropped_when_picked() -> None:
    model = Recorder(row_s=0.01)
    now = [100.0]

    async def main() -> Events:
        events = Events()
        scheduler = WfqScheduler(events=events, clock=lambda: now[0])
        for _ in range(3):
            await submit(scheduler, model, "t", rows(*range(30)))
        gate, held = await hold_worker(scheduler)
        late = submit(scheduler, model, "t", rows(*range(100)), deadline=105.0)  # needs >= 1 s of 5 s left
        await until(lambda: scheduler.tenant_depths().get("t") == 1)
        now[0] = 104.5  # it waited; half a second is left
        gate.set()
        await held
        with pytest.raises(DeadlineExceededError, match="cannot finish before its deadline"):
            await late
        await scheduler.close()
        return events

    events = asyncio.run(main())
    assert len(model.calls) == 3
    assert events.outcomes[("t", Outcome.EXPIRED)] == 1
