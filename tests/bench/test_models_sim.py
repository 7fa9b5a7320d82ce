"""The own-model benchmark's references: the offline oracle is optimal where optimality is checkable, the
simulator's hash is Envoy's (xxHash64), and the simulated replicas run the runtime's real eviction rule."""

from __future__ import annotations

import functools
import itertools
import random

import numpy as np
import pytest

from bench import models_sim as ms


def brute_force_best(sequence: list[int], sizes: list[int], budget: int) -> int:
    """The most hits any eviction schedule (bypass allowed) can get: exhaustive over resident sets."""

    @functools.cache
    def best(pos: int, resident: frozenset[int]) -> int:
        if pos == len(sequence):
            return 0
        m = sequence[pos]
        if m in resident:
            return 1 + best(pos + 1, resident)
        options = [best(pos + 1, resident)]  # bypass
        others = sorted(resident)
        for k in range(len(others) + 1):
            for kept in itertools.combinations(others, k):
                if sum(sizes[x] for x in kept) + sizes[m] <= budget:
                    options.append(best(pos + 1, frozenset(kept) | {m}))
        return max(options)

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(6))
def test_belady_min_is_optimal_for_equal_sizes(seed: int) -> None:
    rng = random.Random(seed)
    sequence = [rng.randrange(5) for _ in range(14)]
    sizes = [1] * 5
    for budget in (1, 2, 3):
        hits, total = ms.belady_hits(sequence, sizes, budget, 0, "min")
        assert total == len(sequence)
        assert hits == brute_force_best(sequence, sizes, budget)


def test_the_oracle_never_loses_to_lru_and_is_at_most_optimal_with_sizes() -> None:
    rng = random.Random(3)
    sizes = [1, 3, 1, 2, 1]
    for _ in range(5):
        sequence = [rng.randrange(5) for _ in range(12)]
        best = brute_force_best(sequence, sizes, 4)
        oracle = max(ms.belady_hits(sequence, sizes, 4, 0, v)[0] for v in ("min", "size"))
        assert ms.lru_hits(sequence, sizes, 4, 0)[0] <= best
        assert oracle <= best


def test_hand_checked_trace() -> None:
    # Budget 2, equal sizes: a b c a b -> keep a and b, bypass c: hits on the last a and b.
    assert ms.belady_hits([0, 1, 2, 0, 1], [1, 1, 1], 2, 0, "min") == (2, 5)
    # LRU evicts a for c, then b for a: no hits.
    assert ms.lru_hits([0, 1, 2, 0, 1], [1, 1, 1], 2, 0) == (0, 5)


def test_xxhash64_is_the_reference_one() -> None:
    assert ms.xxh64(b"") == 0xEF46DB3751D8E999
    assert ms.xxh64(b"abc") == 0x44BC2CF5AD770999
    assert ms.xxh64(b"Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1


def test_ring_spreads_models_over_both_replicas() -> None:
    ring = ms.RingHash(["127.0.0.1:9000", "127.0.0.1:9001"])
    picks = [ring.pick(ms.request_hash("acme", f"m{i}")) for i in range(2000)]
    assert 0.4 < sum(picks) / len(picks) < 0.6


def test_simulated_replicas_run_the_fair_eviction_rule() -> None:
    """Two tenants on one replica, budget for 4 models of 1 byte. Tenant 0 asks for one model (under its
    share of 2) every 6th request; tenant 1 cycles through 6 in between. The real rule evicts only tenant
    1's models, so tenant 0's model hits every time after its first load; a plain LRU evicts it."""
    cycle = itertools.cycle(range(1, 7))
    interleaved = np.array([m for _ in range(20) for m in [0, *(next(cycle) for _ in range(5))]])
    w = ms.Workload(sizes=np.ones(7, dtype=np.int64), owners=np.array([0, 1, 1, 1, 1, 1, 1]),
                    weights=np.array([1.0, 1.0]), times=np.arange(len(interleaved), dtype=float) * 10.0,
                    models=interleaved)
    result = ms.simulate(w, "hash", budget_bytes=4, replicas=1, warm_fraction=0.0)
    # Tenant 0: all 20 requests but the first hit. Tenant 1: 6 models cycling through at most 3 free
    # bytes never hit.
    assert result.hit_rate == pytest.approx(19 / len(interleaved))
    assert ms.lru_hits([int(m) for m in interleaved], [1] * 7, 4, 0) == (0, len(interleaved))
