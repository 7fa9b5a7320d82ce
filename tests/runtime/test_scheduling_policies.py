"""The fairness policies on their own: who is picked, given what each tenant was charged."""

from __future__ import annotations

from collections import Counter

import pytest

from inference_images.runtime.scheduling import Head
from inference_images.runtime.scheduling.fifo import FifoPolicy
from inference_images.runtime.scheduling.wfq import VirtualTimePolicy


def serve(policy: VirtualTimePolicy, weights: dict[str, float], picks: int, cost: float = 1.0) -> Counter[str]:
    """Every tenant in ``weights`` stays backlogged; each pick is charged ``cost``."""
    served: Counter[str] = Counter()
    for seq in range(picks):
        heads = {t: Head(t, w, seq, 10) for t, w in weights.items()}
        tenant = policy.pick(heads)
        policy.charge(tenant, weights[tenant], cost)
        served[tenant] += 1
    return served


def test_backlogged_tenants_share_by_weight() -> None:
    policy = VirtualTimePolicy()
    weights = {"a": 1.0, "b": 1.0, "c": 2.0}
    for tenant in weights:
        policy.joined(tenant, weights[tenant], [t for t in weights if t != tenant])
    served = serve(policy, weights, 400)
    assert served == {"a": 100, "b": 100, "c": 200}


def test_service_is_charged_by_cost_not_by_request() -> None:
    policy = VirtualTimePolicy()
    policy.joined("big", 1.0, [])
    policy.joined("small", 1.0, ["big"])
    # "big" sends requests 4x as expensive: it gets a quarter of the picks and the same service.
    picks: Counter[str] = Counter()
    service: Counter[str] = Counter()
    for seq in range(500):
        tenant = policy.pick({"big": Head("big", 1.0, seq, 5), "small": Head("small", 1.0, seq, 5)})
        cost = 4.0 if tenant == "big" else 1.0
        policy.charge(tenant, 1.0, cost)
        picks[tenant] += 1
        service[tenant] += cost
    assert picks["small"] == pytest.approx(4 * picks["big"], abs=4)
    assert service["small"] == pytest.approx(service["big"], abs=4.0)


def test_an_idle_tenant_earns_no_credit() -> None:
    policy = VirtualTimePolicy()
    policy.joined("busy", 1.0, [])
    serve(policy, {"busy": 1.0}, 1000)  # "idle" sends nothing meanwhile
    policy.joined("idle", 1.0, ["busy"])
    assert policy.counter("idle") == policy.counter("busy")
    # From now on they alternate; without the lift "idle" would take the next 1000 picks in a row.
    served = serve(policy, {"busy": 1.0, "idle": 1.0}, 100)
    assert served == {"busy": 50, "idle": 50}


def test_a_returning_tenant_keeps_what_it_is_ahead_and_joins_an_empty_backlog_at_the_floor() -> None:
    policy = VirtualTimePolicy()
    policy.joined("a", 1.0, [])
    policy.charge("a", 1.0, 10.0)
    policy.left("a")
    # Nobody backlogged: a newcomer starts at the floor (where "a" left), not at zero.
    policy.joined("b", 1.0, [])
    assert policy.counter("b") == 10.0
    policy.charge("b", 1.0, 5.0)
    policy.joined("a", 1.0, ["b"])
    assert policy.counter("a") == 15.0 == policy.counter("b")


def test_ties_go_to_the_shorter_queue_then_to_the_older_request() -> None:
    policy = VirtualTimePolicy()
    policy.joined("flood", 1.0, [])
    policy.joined("light", 1.0, ["flood"])
    heads = {"flood": Head("flood", 1.0, 1, 16), "light": Head("light", 1.0, 9, 1)}
    assert policy.pick(heads) == "light"
    heads = {"flood": Head("flood", 1.0, 1, 1), "light": Head("light", 1.0, 9, 1)}
    assert policy.pick(heads) == "flood"


def test_fifo_ignores_weights_and_picks_the_oldest_request() -> None:
    policy = FifoPolicy()
    heads = {"a": Head("a", 1.0, 7, 1), "b": Head("b", 100.0, 3, 1), "c": Head("c", 1.0, 5, 1)}
    assert policy.pick(heads) == "b"
