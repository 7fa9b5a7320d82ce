"""The model cache's rules, one test each: single flight, the loader pool, failure with backoff, digest
checks, the measured-size budget, fair eviction (most above its weighted share, LRU first), a tenant
within its share keeping its models while another cycles cold ones, pinning, minimum residency, and
load time charged to the owner."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.models.artifacts import ArtifactStore
from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.cache import (
    CacheState,
    ModelCache,
    ModelUnavailableError,
    Resident,
    choose_victims,
)
from inference_images.runtime.models.own import LoadedModel, OwnModelKey, OwnModelLoader, OwnModelRef
from inference_images.runtime.models.registry import ModelRepository, ModelSpec, default_loaders
from inference_images.runtime.scheduling.wfq import VirtualTimePolicy
from tests.runtime import onnx_graphs

SHA = "0" * 64


def ref(owner: str, name: str, version: str = "1", sha: str = SHA, artifact: str = "/models/m.onnx") -> OwnModelRef:
    return OwnModelRef.parse(owner=owner, name=name, version=version, format="onnx", artifact=artifact, sha256=sha)


class FakeModel:
    platform = "fake"
    inputs = ()
    outputs = ()
    device = "cpu"

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = "1"

    def load(self) -> None:
        pass

    def predict(self, inputs: object) -> list[Tensor]:
        return []

    def cost_hint(self, inputs: object) -> float:
        return 1.0


class FakeLoader:
    """Counts loads and the threads they ran on; sizes by model name (``bytes`` map, default 10)."""

    def __init__(self, sizes: dict[str, int] | None = None, fail: Callable[[OwnModelRef], str | None] | None = None):
        self.sizes = sizes or {}
        self.fail = fail
        self.calls: list[OwnModelKey] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def __call__(self, r: OwnModelRef) -> LoadedModel:
        self.gate.wait(10)
        with self._lock:
            self.calls.append(r.key)
            self.threads.add(threading.current_thread().name)
        if self.fail is not None and (reason := self.fail(r)) is not None:
            raise RuntimeError(reason)
        return LoadedModel(FakeModel(r.qualified), self.sizes.get(r.name, 10))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(loader: FakeLoader, clock: Clock | None = None, **kwargs: object) -> ModelCache:
    options: dict[str, object] = {"budget_bytes": 100, "min_residency_s": 0.0, "clock": clock or Clock()}
    options.update(kwargs)
    return ModelCache(loader, **options)  # type: ignore[arg-type]


def resident(cache: ModelCache) -> set[str]:
    return {f"{row.name}/{row.version}" for row in cache.index() if row.state == "ready"}


# -- single flight and the loader pool -------------------------------------------------------------------


def test_32_concurrent_first_calls_make_one_load_on_a_loader_thread() -> None:
    async def main() -> None:
        loader = FakeLoader()
        loader.gate.clear()  # hold the load so every caller arrives while it is in flight
        cache = make_cache(loader)
        r = ref("acme", "router")
        calls = [asyncio.ensure_future(cache.acquire(r)) for _ in range(32)]
        await asyncio.sleep(0.05)
        assert cache.state(r)[0] is CacheState.LOADING
        loader.gate.set()
        models = await asyncio.wait_for(asyncio.gather(*calls), 30)  # a lost waiter fails, not hangs
        assert len(loader.calls) == 1
        assert all(m is models[0] for m in models)
        assert loader.threads == {t for t in loader.threads if t.startswith("model-loader")}
        assert threading.current_thread().name not in loader.threads
        row = cache.index()[0]
        assert (row.hits, row.misses, row.state) == (0, 32, "ready")
        await cache.acquire(r)
        assert cache.index()[0].hits == 1 and len(loader.calls) == 1
        await cache.close()

    asyncio.run(main())


def test_a_caller_that_goes_away_does_not_cancel_the_load_others_wait_for() -> None:
    async def main() -> None:
        loader = FakeLoader()
        loader.gate.clear()
        cache = make_cache(loader)
        r = ref("acme", "router")
        first = asyncio.ensure_future(cache.acquire(r))
        second = asyncio.ensure_future(cache.acquire(r))
        await asyncio.sleep(0.02)
        first.cancel()
        loader.gate.set()
        assert isinstance(await second, FakeModel)
        assert len(loader.calls) == 1
        await cache.close()

    asyncio.run(main())


# -- failures, backoff, digests --------------------------------------------------------------------------


def test_failed_load_marks_failed_and_retries_only_after_exponential_backoff() -> None:
    async def main() -> None:
        clock = Clock()
        broken = {"yes": True}
        loader = FakeLoader(fail=lambda r: "model 'acme:router' version '1': broken graph" if broken["yes"] else None)
        cache = make_cache(loader, clock, backoff_s=2.0)
        r = ref("acme", "router")
        with pytest.raises(ModelUnavailableError) as first:
            await cache.acquire(r)
        assert "broken graph" in first.value.reason and first.value.retry_after_s == pytest.approx(2.0)
        assert cache.index()[0].state == "failed" and "broken graph" in (cache.index()[0].reason or "")
        # Within the backoff: answered from the record, no new load.
        clock.now += 1.0
        with pytest.raises(ModelUnavailableError) as again:
            await cache.acquire(r)
        assert len(loader.calls) == 1 and again.value.retry_after_s == pytest.approx(1.0)
        # Past it: one retry, which fails again and doubles the backoff.
        clock.now += 1.5
        with pytest.raises(ModelUnavailableError) as second:
            await cache.acquire(r)
        assert len(loader.calls) == 2 and second.value.retry_after_s == pytest.approx(4.0)
        # Fixed: the next retry after the backoff serves.
        broken["yes"] = False
        clock.now += 4.5
        assert isinstance(await cache.acquire(r), FakeModel)
        assert len(loader.calls) == 3 and cache.index()[0].state == "ready"
        await cache.close()

    asyncio.run(main())


def test_digest_mismatch_fails_the_model_with_a_reason_naming_it_and_the_check(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx")
    wrong = hashlib.sha256(b"other bytes").hexdigest()

    async def main() -> None:
        loader = OwnModelLoader(ArtifactStore(tmp_path / "cache"))
        cache = ModelCache(loader, budget_bytes=10 * 2**20, min_residency_s=0)
        bad = ref("acme", "router", sha=wrong, artifact=str(path))
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(bad)
        reason = exc.value.reason
        assert "acme:router" in reason and "checksum mismatch" in reason and wrong in reason and sha in reason
        row = cache.index()[0]
        assert row.state == "failed" and row.reason == reason
        # Nothing unverified was kept: the right digest still loads from the same path.
        good = await cache.acquire(ref("acme", "router", version="2", sha=sha, artifact=str(path)))
        assert [spec.name for spec in good.inputs] == ["x"]
        await cache.close()

    asyncio.run(main())


def test_corrupt_onnx_fails_with_the_model_named_and_other_models_keep_serving(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf graph")
    corrupt_sha = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    good_path, good_sha = onnx_graphs.linear(tmp_path / "good.onnx")

    async def main() -> None:
        cache = ModelCache(OwnModelLoader(ArtifactStore(tmp_path / "cache")), budget_bytes=2**24, min_residency_s=0)
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(ref("acme", "broken", sha=corrupt_sha, artifact=str(corrupt)))
        assert "acme:broken" in exc.value.reason and "not a loadable ONNX graph" in exc.value.reason
        model = await cache.acquire(ref("acme", "fine", sha=good_sha, artifact=str(good_path)))
        assert model.outputs
        await cache.close()

    asyncio.run(main())


def test_a_model_larger_than_the_whole_budget_fails_with_that_reason() -> None:
    async def main() -> None:
        loader = FakeLoader(sizes={"huge": 150})
        cache = make_cache(loader)
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(ref("acme", "huge"))
        assert "more than the whole cache budget" in exc.value.reason and "acme:huge" in exc.value.reason
        assert cache.index()[0].state == "failed" and cache.resident_bytes() == 0
        await cache.close()

    asyncio.run(main())


# -- eviction --------------------------------------------------------------------------------------------


def _res(owner: str, name: str, size: int, used: float, loaded: float = 0.0) -> Resident:
    return Resident(OwnModelKey(owner, name, "1", SHA), size, loaded, used)


def test_victims_come_from_the_tenant_most_above_its_weighted_share_lru_first() -> None:
    models = [
        _res("a", "a1", 30, used=5),
        _res("a", "a2", 30, used=1),  # a's least recently used
        _res("b", "b1", 20, used=0),  # oldest of all, but b is within its share
        _res("c", "c1", 10, used=2),
    ]
    # Budget 100; weights a=1, b=2, c=1 -> shares 25, 50, 25. Usage a=60 (+35 over), b=20, c=10+need.
    victims = choose_victims(models, {"a": 1, "b": 2, "c": 1}, "c", 15, 100, now=100, min_residency_s=0)
    assert victims == [OwnModelKey("a", "a2", "1", SHA)]
    # A bigger need puts the requester itself furthest over (10 + 45 of 25) once a is down to 30 of 25:
    # c pays with its own model before a loses a second one, and b (within its share) loses nothing.
    victims = choose_victims(models, {"a": 1, "b": 2, "c": 1}, "c", 45, 100, now=100, min_residency_s=0)
    assert victims == [OwnModelKey("a", "a2", "1", SHA), OwnModelKey("c", "c1", "1", SHA)]


def test_idle_tenants_have_no_share_and_go_first() -> None:
    models = [_res("idle", "i1", 20, used=50), _res("busy", "b1", 60, used=1)]
    victims = choose_victims(models, {"busy": 1, "new": 1}, "new", 30, 100, now=100, min_residency_s=0)
    assert victims == [OwnModelKey("idle", "i1", "1", SHA)]  # idle was "over" by all 20 of its bytes
    victims = choose_victims(models, {"busy": 1, "new": 1}, "new", 50, 100, now=100, min_residency_s=0)
    assert victims == [OwnModelKey("idle", "i1", "1", SHA), OwnModelKey("busy", "b1", "1", SHA)]


def test_nobody_within_their_share_is_evicted_even_when_the_requester_cannot_fit() -> None:
    models = [_res("a", "a1", 40, used=0), _res("b", "b1", 40, used=0)]
    # Shares 50 each; a requester already at its share (b) must evict its own, never a's.
    victims = choose_victims(models, {"a": 1, "b": 1}, "b", 30, 100, now=100, min_residency_s=0)
    assert victims == [OwnModelKey("b", "b1", "1", SHA)]
    only_a = [_res("a", "a1", 45, used=0), _res("b", "b1", 45, used=0, loaded=99)]  # b's is too young
    assert choose_victims(only_a, {"a": 1, "b": 1}, "b", 30, 100, now=100, min_residency_s=10) is None


def test_a_tenant_within_its_share_keeps_its_models_while_another_cycles_cold_models() -> None:
    async def main() -> None:
        clock = Clock()
        cache = make_cache(FakeLoader(), clock, budget_bytes=200)
        # acme: 5 warm models of 10 bytes (50, half of its share of 100); globex cycles 100 cold ones.
        warm = [ref("acme", f"warm{i}") for i in range(5)]
        for r in warm:
            await cache.acquire(r)
        for i in range(100):
            clock.now += 1
            await cache.acquire(ref("globex", f"cold{i}"))
            if i % 10 == 0:
                for r in warm:  # acme keeps using its models, so it keeps its demand
                    await cache.acquire(r)
        assert {f"acme:warm{i}/1" for i in range(5)} <= resident(cache)
        assert sum(1 for row in cache.index() if row.owner == "globex" and row.state == "ready") == 15
        assert cache.resident_bytes() <= 200
        # Every globex model that went was evicted; acme lost none.
        assert all(row.state == "ready" for row in cache.index() if row.owner == "acme")
        await cache.close()

    asyncio.run(main())


def test_budget_full_evicts_by_the_rule_through_the_cache() -> None:
    async def main() -> None:
        clock = Clock()
        cache = make_cache(FakeLoader(sizes={"big": 40}), clock, budget_bytes=100)
        for name in ("m1", "m2", "m3", "m4"):
            clock.now += 1
            await cache.acquire(ref("acme", name))  # acme: 40 bytes
        for name in ("m1", "m2", "m3"):
            clock.now += 1
            await cache.acquire(ref("globex", name))  # globex: 30 bytes
        clock.now += 1
        await cache.acquire(ref("acme", "m1"))  # acme's m2 is now its least recently used
        clock.now += 1
        await cache.acquire(ref("initech", "big"))  # needs 40 of the 30 free: shares are 33 each
        # acme (40 of 33) was the most above its share: its LRU model m2 went, nothing of globex's.
        assert resident(cache) == {
            "acme:m1/1",
            "acme:m3/1",
            "acme:m4/1",
            "globex:m1/1",
            "globex:m2/1",
            "globex:m3/1",
            "initech:big/1",
        }
        evicted = [row for row in cache.index() if row.state == "evicted"]
        assert [(row.name, row.reason) for row in evicted] == [("acme:m2", "evicted to make room")]
        await cache.close()

    asyncio.run(main())


def test_models_younger_than_the_minimum_residency_are_never_evicted() -> None:
    async def main() -> None:
        clock = Clock()
        loader = FakeLoader(sizes={"a": 60, "b": 60})
        cache = make_cache(loader, clock, budget_bytes=100, min_residency_s=30)
        await cache.acquire(ref("acme", "a"))
        clock.now += 10
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(ref("acme", "b"))
        assert "does not fit" in exc.value.reason and exc.value.retry_after_s
        assert resident(cache) == {"acme:a/1"}
        clock.now += 25  # a is 35 s old now
        await cache.acquire(ref("acme", "b"))
        assert resident(cache) == {"acme:b/1"}
        await cache.close()

    asyncio.run(main())


def test_pinned_catalog_bytes_come_off_the_budget_and_are_never_evicted() -> None:
    async def main() -> None:
        clock = Clock()
        cache = make_cache(FakeLoader(sizes={"m": 30, "big": 50}), clock, budget_bytes=100, pinned_bytes=lambda: 60)
        await cache.acquire(ref("acme", "m"))
        clock.now += 1
        await cache.acquire(ref("globex", "m"))  # 40 left for own models: acme's goes, the catalog stays
        assert resident(cache) == {"globex:m/1"}
        clock.now += 1
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(ref("initech", "big"))  # 50 would fit in 100, not in the 40 left over
        assert "more than the whole cache budget of 40 B" in exc.value.reason
        assert resident(cache) == {"globex:m/1"}
        await cache.close()

    # The catalog's side: a repository's models are outside the cache and its index.
    repository = ModelRepository([ModelSpec.parse("classifier:v1:lexicon")], default_loaders())
    repository.load_all()
    assert repository.resolve("classifier").ready

    asyncio.run(main())


def test_unload_drops_every_version_and_the_next_request_loads_again() -> None:
    async def main() -> None:
        loader = FakeLoader()
        cache = make_cache(loader)
        await cache.acquire(ref("acme", "m", "1"))
        await cache.acquire(ref("acme", "m", "2"))
        await cache.acquire(ref("globex", "m", "1"))
        assert cache.unload("acme", "m") == 2
        assert resident(cache) == {"globex:m/1"}
        await cache.acquire(ref("acme", "m", "1"))
        assert len(loader.calls) == 4
        await cache.close()

    asyncio.run(main())


# -- the cost of a load ------------------------------------------------------------------------------------


def test_load_time_is_charged_to_the_owner_in_the_fair_scheduler() -> None:
    policy = VirtualTimePolicy(idle_credit_s=0)
    charges: list[tuple[str, float, float]] = []

    def charge(tenant: str, seconds: float, weight: float) -> None:
        charges.append((tenant, seconds, weight))
        policy.charge(tenant, weight, seconds)

    async def main() -> None:
        cache = make_cache(FakeLoader(), charge=charge)
        await cache.acquire(ref("globex", "cold"), weight=2.0)
        await cache.acquire(ref("globex", "cold"), weight=2.0)  # a hit costs nothing
        await cache.close()

    asyncio.run(main())
    assert [(t, w) for t, _, w in charges] == [("globex", 2.0)]
    # The charge survives the lift a returning tenant gets: globex starts behind acme.
    policy.joined("acme", 1.0, [])
    policy.joined("globex", 2.0, ["acme"])
    assert policy.counter("globex") > policy.counter("acme")
    assert policy.counter("globex") == pytest.approx(charges[0][1] / 2.0)


def test_own_model_answers_what_onnxruntime_computes(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "m.onnx", n_in=4, n_out=3, seed=7)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 7
    expected = onnx_graphs.run(path, {"x": x})

    async def main() -> None:
        cache = ModelCache(OwnModelLoader(ArtifactStore(tmp_path / "cache")), min_residency_s=0)
        model = await cache.acquire(ref("acme", "m", sha=sha, artifact=str(path)))
        outputs = model.predict({"x": Tensor("x", "FP32", (2, 4), x.ravel().tolist())})
        got = {t.name: np.array(t.data).reshape(t.shape) for t in outputs}
        for name, want in expected.items():
            np.testing.assert_array_equal(got[name].astype(want.dtype), want)
        row = cache.index()[0]
        assert row.bytes >= path.stat().st_size and row.load_seconds > 0
        await cache.close()

    asyncio.run(main())
