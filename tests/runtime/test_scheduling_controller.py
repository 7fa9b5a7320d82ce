"""The scheduler with real queues and a real worker thread: weights honoured among backlogged tenants,
bounded queues that refuse at once, requests dropped before they run, batches across tenants."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from inference_images.runtime.models.base import ANY_DIM, Tensor, TensorSpec
from inference_images.runtime.scheduling import (
    Admission,
    BatchingConfig,
    BatchItem,
    BatchLimit,
    ClientGoneError,
    DeadlineExceededError,
    FifoScheduler,
    Outcome,
    QueueFullError,
    QueueScheduler,
    WfqScheduler,
)
from inference_images.runtime.tokens import predict


class Events:
    """A SchedulerEvents that remembers everything."""

    def __init__(self) -> None:
        self.service: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, Outcome]] = Counter()
        self.waits: list[str] = []
        self.depths: dict[str, int] = {}
        self.batches: list[int] = []

    def observe_service(self, tenant: str, seconds: float) -> None:
        self.service[tenant] += seconds

    def observe_wait(self, tenant: str, seconds: float) -> None:
        self.waits.append(tenant)

    def observe_outcome(self, tenant: str, outcome: Outcome) -> None:
        self.outcomes[(tenant, outcome)] += 1

    def observe_depth(self, tenant: str, depth: int) -> None:
        self.depths[tenant] = depth

    def observe_batch(self, model: str, size: int) -> None:
        self.batches.append(size)


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll on the loop; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def hold_worker(scheduler: QueueScheduler) -> tuple[threading.Event, asyncio.Task[Any]]:
    """Occupy the worker until the returned event is set, so requests pile up behind it."""
    gate = threading.Event()
    task = asyncio.ensure_future(scheduler.submit("gate", 1.0, 1.0, gate.wait))
    await until(lambda: scheduler.queue_depth() == 1 and not scheduler.tenant_depths())
    return gate, task


def test_backlogged_tenants_share_the_worker_by_weight() -> None:
    weights = {"a": 1.0, "b": 1.0, "c": 2.0}
    completed: list[str] = []

    async def main() -> Events:
        events = Events()
        scheduler = WfqScheduler(events=events)
        gate, held = await hold_worker(scheduler)

        async def one(tenant: str) -> None:
            await scheduler.submit(tenant, weights[tenant], 1.0, lambda: time.sleep(0.002), max_queue=100)
            completed.append(tenant)

        # "a" arrives first with everything; a FIFO would serve all of it before anyone else.
        tasks = [asyncio.ensure_future(one(t)) for t in ("a",) * 40 + ("b",) * 40 + ("c",) * 40]
        await until(lambda: sum(scheduler.tenant_depths().values()) == 120)
        gate.set()
        await asyncio.gather(held, *tasks)
        await scheduler.close()
        return events

    events = asyncio.run(main())
    # While all three were backlogged (the first 60 completions), service went 1:1:2 by weight.
    # Measured seconds are charged, so the proportion holds in service; counts show it plainly.
    first = Counter(completed[:60])
    assert 11 <= first["a"] <= 19 and 11 <= first["b"] <= 19 and 24 <= first["c"] <= 36, first
    assert all(events.outcomes[(t, Outcome.OK)] == 40 for t in weights)


def test_fifo_serves_in_arrival_order_whatever_the_weights() -> None:
    completed: list[str] = []

    async def main() -> None:
        scheduler = FifoScheduler()
        gate, held = await hold_worker(scheduler)

        async def one(tenant: str, weight: float) -> None:
            await scheduler.submit(tenant, weight, 1.0, lambda: None)
            completed.append(tenant)

        tasks = [asyncio.ensure_future(one("a", 1.0)) for _ in range(10)]
        tasks += [asyncio.ensure_future(one("c", 8.0)) for _ in range(10)]
        await until(lambda: sum(scheduler.tenant_depths().values()) == 20)
        gate.set()
        await asyncio.gather(held, *tasks)
        await scheduler.close()

    asyncio.run(main())
    assert completed == ["a"] * 10 + ["c"] * 10


def test_a_full_queue_refuses_at_once_and_only_that_tenant() -> None:
    ran: list[str] = []

    async def main() -> tuple[Events, QueueFullError]:
        events = Events()
        scheduler = WfqScheduler(events=events, admission=Admission(default_max_queue=2))
        gate, held = await hold_worker(scheduler)
        queued = [
            asyncio.ensure_future(scheduler.submit("flood", 1.0, 1.0, lambda: ran.append("flood"), max_queue=3))
            for _ in range(3)
        ]
        await until(lambda: scheduler.tenant_depths().get("flood") == 3)
        with pytest.raises(QueueFullError) as refused:
            await scheduler.submit("flood", 1.0, 1.0, lambda: ran.append("extra"), max_queue=3)
        # Another tenant is admitted; without a bound from the gateway the default (2) applies.
        others = [
            asyncio.ensure_future(scheduler.submit("calm", 1.0, 1.0, lambda: ran.append("calm"))) for _ in range(2)
        ]
        await until(lambda: scheduler.tenant_depths().get("calm") == 2)
        with pytest.raises(QueueFullError):
            await scheduler.submit("calm", 1.0, 1.0, lambda: ran.append("extra"))
        gate.set()
        await asyncio.gather(held, *queued, *others)
        await scheduler.close()
        return events, refused.value

    events, refused = asyncio.run(main())
    assert "extra" not in ran and ran.count("flood") == 3 and ran.count("calm") == 2
    assert refused.limit == 3 and refused.retry_after_s >= 1 and "flood" in str(refused)
    assert events.outcomes[("flood", Outcome.REJECTED_QUEUE_FULL)] == 1
    assert events.outcomes[("calm", Outcome.REJECTED_QUEUE_FULL)] == 1
    assert events.outcomes[("flood", Outcome.OK)] == 3
    assert events.depths["flood"] == 0


def test_expired_gone_and_withdrawn_requests_never_reach_the_model() -> None:
    ran: list[str] = []
    now = [100.0]
    left = [False]

    async def main() -> Events:
        events = Events()
        scheduler = WfqScheduler(events=events, clock=lambda: now[0])
        gate, held = await hold_worker(scheduler)
        expired = asyncio.ensure_future(scheduler.submit("t", 1.0, 1.0, lambda: ran.append("expired"), deadline=101.0))
        gone = asyncio.ensure_future(scheduler.submit("t", 1.0, 1.0, lambda: ran.append("gone"), gone=lambda: left[0]))
        withdrawn = asyncio.ensure_future(scheduler.submit("u", 1.0, 1.0, lambda: ran.append("withdrawn")))
        alive = asyncio.ensure_future(scheduler.submit("t", 1.0, 1.0, lambda: ran.append("alive"), deadline=200.0))
        await until(lambda: scheduler.queue_depth() == 5)
        withdrawn.cancel()
        await until(lambda: scheduler.queue_depth() == 4)
        assert "u" not in scheduler.tenant_depths()
        now[0] = 150.0  # past the first deadline, before the last
        left[0] = True  # the second one's client leaves while it waits
        gate.set()
        await held
        with pytest.raises(DeadlineExceededError):
            await expired
        with pytest.raises(ClientGoneError):
            await gone
        with pytest.raises(asyncio.CancelledError):
            await withdrawn
        await alive
        await scheduler.close()
        return events

    events = asyncio.run(main())
    assert ran == ["alive"]
    assert events.outcomes[("t", Outcome.EXPIRED)] == 1
    assert events.outcomes[("t", Outcome.CANCELLED)] == 1
    assert events.outcomes[("u", Outcome.CANCELLED)] == 1
    assert events.outcomes[("t", Outcome.OK)] == 1


class Doubler:
    """A batchable model that records each forward pass: FP32 x [n] -> y [n] = 2x."""

    name, version, platform, device = "doubler", "v1", "test", "cpu"
    inputs = (TensorSpec("x", "FP32", (ANY_DIM,)),)
    outputs = (TensorSpec("y", "FP32", (ANY_DIM,)),)

    def __init__(self) -> None:
        self.passes: list[int] = []

    def load(self) -> None:
        pass

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        x = inputs["x"]
        self.passes.append(x.shape[0])
        return [Tensor("y", "FP32", x.shape, [2 * v for v in x.data])]

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        return float(inputs["x"].shape[0])


def test_batches_mix_tenants_in_policy_order_and_split_results_and_service() -> None:
    model = Doubler()
    other = Doubler()
    other.name = "other"

    async def main() -> tuple[Events, list[Any], WfqScheduler]:
        events = Events()
        scheduler = WfqScheduler(
            events=events, batching=BatchingConfig({"doubler": BatchLimit(max_size=4), "other": BatchLimit(4)})
        )
        gate, held = await hold_worker(scheduler)
        submissions = []
        # "flood" queued 6 single-row requests first; "light" one 2-row request; "other" model meanwhile.
        for i in range(6):
            inputs = {"x": Tensor("x", "FP32", (1,), [float(i)])}
            submissions.append(
                scheduler.submit("flood", 1.0, 1.0, lambda i=inputs: predict(model, i), batch=BatchItem(model, inputs))
            )
        light = {"x": Tensor("x", "FP32", (2,), [10.0, 20.0])}
        submissions.append(
            scheduler.submit("light", 1.0, 2.0, lambda: predict(model, light), batch=BatchItem(model, light))
        )
        odd = {"x": Tensor("x", "FP32", (1,), [7.0])}
        submissions.append(
            scheduler.submit("light", 1.0, 1.0, lambda: predict(other, odd), batch=BatchItem(other, odd))
        )
        tasks = [asyncio.ensure_future(s) for s in submissions]
        await until(lambda: sum(scheduler.tenant_depths().values()) == 8)
        gate.set()
        results = await asyncio.gather(*tasks)
        await held
        await scheduler.close()
        return events, results, scheduler

    events, results, _ = asyncio.run(main())
    # Each request gets back exactly its own rows.
    assert [r.outputs[0].data for r in results[:6]] == [[2.0 * i] for i in range(6)]
    assert results[6].outputs[0].data == [20.0, 40.0] and results[6].outputs[0].shape == (2,)
    assert results[7].outputs[0].data == [14.0]
    # The light tenant's request rode in the first batch beside the flood's (fairness picks it early),
    # and no batch mixed two models.
    assert model.passes[0] == 5 and sum(model.passes) == 8 and other.passes == [1]
    assert events.batches.count(4) == 1
    # Time is charged by cost: light's 2-row request paid for two rows of its batch.
    assert events.service["light"] > 0 and events.service["flood"] > 0


class SlowDoubler(Doubler):
    """A Doubler whose every forward pass takes a while, recording the rows it was given."""

    def __init__(self, pass_s: float) -> None:
        super().__init__()
        self.pass_s = pass_s
        self.rows: list[list[float]] = []

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        self.rows.append(list(inputs["x"].data))
        time.sleep(self.pass_s)
        return super().predict(inputs)


@pytest.mark.parametrize("policy", ["wfq", "fifo"])
def test_a_large_request_lets_a_tenant_owed_service_run_between_its_calls(policy: str) -> None:
    """One tenant's 40-row request runs in calls of 4 rows. A request of another tenant arriving meanwhile
    runs after the call in progress, not after all ten (weighted fair queuing); the large one then resumes
    where it stopped and gets every row back in order. FIFO still serves in arrival order."""
    model = SlowDoubler(0.03)

    async def main() -> tuple[Events, list[Any]]:
        events = Events()
        scheduler = WfqScheduler(events=events) if policy == "wfq" else FifoScheduler(events=events)
        big_inputs = {"x": Tensor("x", "FP32", (40,), [float(i) for i in range(40)])}
        big = asyncio.ensure_future(scheduler.submit(
            "big", 1.0, 40.0, lambda: predict(model, big_inputs), batch=BatchItem(model, big_inputs, chunk_rows=4)))
        await until(lambda: len(model.rows) >= 1)
        small_inputs = {"x": Tensor("x", "FP32", (1,), [100.0])}
        small = await scheduler.submit("small", 1.0, 1.0, lambda: predict(model, small_inputs),
                                       batch=BatchItem(model, small_inputs, chunk_rows=4))
        done = [await big, small]
        await scheduler.close()
        return events, done

    events, (big, small) = asyncio.run(main())
    assert big.outputs[0].data == [2.0 * i for i in range(40)] and small.outputs[0].data == [200.0]
    assert sorted(len(r) for r in model.rows) == [1] + [4] * 10
    at = model.rows.index([100.0])
    if policy == "wfq":
        assert at <= 3, model.rows  # after the call in progress (and at most a call or two more)
    else:
        assert at == 10, model.rows
    assert [r for r in model.rows if r != [100.0]] == [[float(i) for i in range(k, k + 4)] for k in range(0, 40, 4)]
    # Each tenant is charged the time its own calls took: the large one about ten calls' worth.
    assert events.service["big"] > 6 * events.service["small"]
    assert events.outcomes[("big", Outcome.OK)] == 1 and events.outcomes[("small", Outcome.OK)] == 1
