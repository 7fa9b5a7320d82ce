"""The model cache's rules, one test each: single flight, the loader pool, failure with backoff, digest
checks, the measured-size budget, fair eviction (most above its weighted share, LRU first), a tenant
within its share keeping its models while another cycles cold ones, pinning, minimum residency, and
load time charged to the owner."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.models.artifacts import BACKGROUND_NICE, ArtifactStore
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


def make_cache(loader: FakeLoader | GatedLoader, clock: Clock | None = None, **kwargs: object) -> ModelCache:
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_loads_run_at_a_lower_cpu_priority_than_the_serving_threads() -> None:
    seen: list[int] = []

    def loader(r: OwnModelRef) -> LoadedModel:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return LoadedModel(FakeModel(r.qualified), 10)

    async def main() -> None:
        cache = ModelCache(loader, budget_bytes=100, min_residency_s=0)
        await cache.acquire(ref("acme", "m"))
        await cache.close()

    serving = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    asyncio.run(main())
    assert seen and seen[0] >= max(serving, BACKGROUND_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == serving  # only the loader's own


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


def test_digest_mismatch_fails_the_model_with_a_reason_naming_it_and_the_check(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx")
    wrong = hashlib.sha256(b"other bytes").hexdigest()

    async def main() -> None:
        loader = OwnModelLoader(ArtifactStore(tmp_path / "cache"))
        cache = ModelCache(loader, budget_bytes=10 * 2**20, min_residency_s=0)
        bad = ref("acme", "router", sha=wrong, artifact=str(path))
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(bad)
        # The caller learns the model, the version and the check, not where the replica reads the artifact
        # nor either digest.
        reason = exc.value.reason
        assert reason == "model 'acme:router' version '1': its artifact failed its integrity check (sha256 mismatch)"
        row = cache.index()[0]
        assert row.state == "failed" and row.reason == reason
        # The replica's log has the detail.
        (record,) = [r for r in caplog.records if r.getMessage() == "model failed to load"]
        detail = record.__dict__["detail"]
        assert str(path) in detail and wrong in detail and sha in detail and record.__dict__["reason"] == reason
        # Nothing unverified was kept: the right digest still loads from the same path.
        good = await cache.acquire(ref("acme", "router", version="2", sha=sha, artifact=str(path)))
        assert [spec.name for spec in good.inputs] == ["x"]
        await cache.close()

    asyncio.run(main())


def test_a_local_artifact_gone_from_the_replica_fails_without_naming_its_path(tmp_path: Path) -> None:
    gone = tmp_path / "models" / "router.onnx"

    async def main() -> None:
        cache = ModelCache(OwnModelLoader(ArtifactStore(tmp_path / "cache")), min_residency_s=0)
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(ref("acme", "router", version="3", artifact=str(gone)))
        assert exc.value.reason == "model 'acme:router' version '3': its artifact cannot be read on this replica"
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


# -- fair loading: one load in flight per tenant, tenants served by virtual time -------------------------


class GatedLoader:
    """Records the order loads start in, and holds each until its model's gate opens."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(name, threading.Event())

    def __call__(self, r: OwnModelRef) -> LoadedModel:
        with self._lock:
            self.started.append(f"{r.owner}:{r.name}")
        self.gate(r.name).wait(10)
        return LoadedModel(FakeModel(r.qualified), 10)


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_a_tenant_has_at_most_one_load_in_flight_so_a_cold_cycler_cannot_hold_every_loader() -> None:
    async def main() -> None:
        loader = GatedLoader()
        cache = make_cache(loader, loader_threads=2)
        cold = [asyncio.ensure_future(cache.acquire(ref("globex", f"cold{i}"))) for i in range(3)]
        await _until(lambda: loader.started == ["globex:cold0"])
        await asyncio.sleep(0.1)  # a second thread is free, yet globex's next load waits for its first
        assert loader.started == ["globex:cold0"]
        # acme's first load takes the free thread at once, not after globex's backlog.
        warm = asyncio.ensure_future(cache.acquire(ref("acme", "router")))
        await _until(lambda: len(loader.started) == 2)
        assert loader.started == ["globex:cold0", "acme:router"]
        loader.gate("router").set()
        await asyncio.wait_for(warm, 10)
        loader.gate("cold0").set()
        await _until(lambda: len(loader.started) == 3)
        assert loader.started[2] == "globex:cold1"  # one at a time: cold1 only once cold0 is done
        loader.gate("cold1").set()
        loader.gate("cold2").set()
        await asyncio.wait_for(asyncio.gather(*cold), 10)
        assert loader.started == ["globex:cold0", "acme:router", "globex:cold1", "globex:cold2"]
        await cache.close()

    asyncio.run(main())


def test_loads_are_admitted_in_fair_order_not_arrival_order() -> None:
    async def main() -> None:
        loader = GatedLoader()
        cache = make_cache(loader, loader_threads=1)
        # globex queues three cold loads, then acme and initech one each, all while the thread is busy.
        calls = [asyncio.ensure_future(cache.acquire(ref("globex", f"cold{i}"))) for i in range(3)]
        await _until(lambda: loader.started == ["globex:cold0"])
        calls.append(asyncio.ensure_future(cache.acquire(ref("acme", "a"))))
        await asyncio.sleep(0.02)
        calls.append(asyncio.ensure_future(cache.acquire(ref("initech", "i"))))
        await asyncio.sleep(0.02)
        for gate in ("cold0", "cold1", "cold2", "a", "i"):
            loader.gate(gate).set()
        await asyncio.wait_for(asyncio.gather(*calls), 10)
        # Arrival order would be cold0, cold1, cold2, a, i. globex was charged for cold0, so the tenants
        # that have loaded nothing go first, then globex's backlog.
        assert loader.started == ["globex:cold0", "acme:a", "initech:i", "globex:cold1", "globex:cold2"]
        await cache.close()

    asyncio.run(main())


def test_closing_the_cache_fails_queued_loads_instead_of_leaving_them_waiting() -> None:
    async def main() -> None:
        loader = GatedLoader()
        cache = make_cache(loader, loader_threads=1)
        first = asyncio.ensure_future(cache.acquire(ref("globex", "busy")))
        await _until(lambda: loader.started == ["globex:busy"])
        queued = asyncio.ensure_future(cache.acquire(ref("acme", "queued")))
        await asyncio.sleep(0.02)
        await cache.close()
        with pytest.raises(ModelUnavailableError, match="closing"):
            await asyncio.wait_for(queued, 5)
        loader.gate("busy").set()
        with pytest.raises(ModelUnavailableError, match="closing"):
            await asyncio.wait_for(first, 5)
        assert loader.started == ["globex:busy"]

    asyncio.run(main())


def test_resident_bytes_follow_admission_eviction_failure_and_unload() -> None:
    async def main() -> None:
        clock = Clock()
        loader = FakeLoader(sizes={"big": 60}, fail=lambda r: "model 'x': broken" if r.name == "bad" else None)
        cache = make_cache(loader, clock, budget_bytes=100)
        for name in ("m1", "m2", "m3"):
            clock.now += 1
            await cache.acquire(ref("acme", name))
        await cache.acquire(ref("globex", "m1"))
        assert cache.resident_bytes_by_tenant() == {"acme": 30, "globex": 10}
        with pytest.raises(ModelUnavailableError):
            await cache.acquire(ref("globex", "bad"))
        assert cache.resident_bytes() == 40
        clock.now += 1
        await cache.acquire(ref("initech", "big"))  # needs 60 of the 60 free: nothing goes
        clock.now += 1
        await cache.acquire(ref("initech", "m1"))  # 10 more: initech is furthest over its share
        assert cache.resident_bytes_by_tenant() == {"acme": 30, "globex": 10, "initech": 10}
        cache.unload("acme", "m2")
        assert cache.resident_bytes_by_tenant() == {"acme": 20, "globex": 10, "initech": 10}
        assert cache.resident_bytes() == sum(row.bytes for row in cache.index() if row.state == "ready")
        await cache.close()

    asyncio.run(main())
