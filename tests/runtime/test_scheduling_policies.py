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


@pytest.mark.parametrize("credit", [0.0, 0.1])
def test_an_idle_tenant_earns_no_more_than_the_bounded_credit(credit: float) -> None:
    policy = VirtualTimePolicy(idle_credit_s=credit)
    policy.joined("busy", 1.0, [])
    serve(policy, {"busy": 1.0}, 1000, cost=0.01)  # 10 s of service; "idle" sends nothing meanwhile
    policy.joined("idle", 1.0, ["busy"])
    assert policy.counter("idle") == pytest.approx(policy.counter("busy") - credit)
    # Without the lift "idle" would take the next 1000 picks in a row (10 s of credit). With it, it runs
    # ahead by the credit (10 picks of 0.01 s), then they alternate.
    served = serve(policy, {"busy": 1.0, "idle": 1.0}, 200, cost=0.01)
    head_start = round(credit / 0.01)
    assert served["idle"] - served["busy"] in (head_start, head_start + 1, head_start - 1)
    assert served["idle"] <= 100 + head_start


def test_a_returning_tenant_keeps_what_it_is_ahead_and_joins_an_empty_backlog_where_the_last_left() -> None:
    policy = VirtualTimePolicy(idle_credit_s=1.0)
    policy.joined("a", 1.0, [])
    policy.charge("a", 1.0, 10.0)
    policy.left("a")
    a_left_at = policy.counter("a")
    # Nobody backlogged: a newcomer starts where "a" left (less the credit), not at zero.
    policy.joined("b", 1.0, [])
    assert policy.counter("b") == a_left_at - 1.0
    policy.charge("b", 1.0, 5.0)
    # "a" returns while "b" is backlogged: lifted to b's level less the credit, as b is now ahead of it.
    policy.joined("a", 1.0, ["b"])
    assert policy.counter("a") == policy.counter("b") - 1.0
    # A tenant already ahead of that keeps its counter.
    policy.left("a")
    policy.charge("a", 1.0, 50.0)
    policy.joined("a", 1.0, ["b"])
    assert policy.counter("a") > policy.counter("b") + 40.0


def test_ties_go_to_the_shorter_queue_then_to_the_older_request() -> None:
    policy = VirtualTimePolicy(idle_credit_s=0.0)
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
