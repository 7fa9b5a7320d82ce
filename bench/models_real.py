"""The own-model benchmark's parts measured on real processes and real models (``bench/models.py`` runs them):

- ``cold_loads``: the real load path (``ModelCache`` + ``OwnModelLoader`` + ``ArtifactStore``: download from a
  moto S3 server, sha256, onnxruntime session, footprint) against boto3 get + sha256 of the same objects;
- ``residency``: resident bytes against the budget once full, and the process's RSS over many load/unload
  cycles;
- ``fairness``: the runtime's scheduler and cache in one process with real models: a tenant with warm models
  against another cycling through cold ones, and the same run without the second.

The ONNX models are small MLPs generated with ``onnx.helper`` (``mlp_onnx``), sized to a target file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import latency_stats
from inference_images.runtime.models import footprint, onnx_format
from inference_images.runtime.models.artifacts import ArtifactStore
from inference_images.runtime.models.base import Model, Tensor
from inference_images.runtime.models.cache import ModelCache, ModelUnavailableError
from inference_images.runtime.models.own import LoadedModel, OwnModelLoader, OwnModelRef
from inference_images.runtime.scheduling import WfqScheduler
from xds_server.local.aws import moto_server

BUCKET = "bench-models"
SIZE_BUCKETS = (("20 KB", 20_000), ("200 KB", 200_000), ("2 MB", 2_000_000), ("20 MB", 20_000_000))
OUTPUTS = 4


def mlp_onnx(target_bytes: int, seed: int) -> tuple[bytes, int]:
    """An MLP ``x[N,d] -> MatMul -> Relu -> MatMul -> y[N,4]`` whose file is about ``target_bytes``; (bytes, d)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = max(int(math.sqrt(target_bytes / 4)) - OUTPUTS, 4)
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((d, d), dtype=np.float32) / math.sqrt(d), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((d, OUTPUTS), dtype=np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", OUTPUTS])], initializer=[w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), d


def write_model(root: Path, target_bytes: int, seed: int) -> tuple[Path, str, int]:
    data, d = mlp_onnx(target_bytes, seed)
    path = root / f"mlp-{target_bytes}-{seed}.onnx"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), d


def own_copy(config_dir: Path, tenant: str, artifact: Path) -> Path:
    """`artifact` in `tenant`'s own folder of the config (models/<tenant>/), where a tenant's local artifacts
    must be: a hard link, so a thousand tenants bringing the same bench model cost no disk."""
    target = config_dir / "models" / tenant / artifact.name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(artifact, target)
        except OSError:  # another filesystem
            shutil.copyfile(artifact, target)
    return target


def local_ref(owner: str, name: str, path: Path, digest: str) -> OwnModelRef:
    return OwnModelRef.parse(owner=owner, name=name, version="1", format="onnx", artifact=str(path), sha256=digest)


def infer_input(d: int, rows: int = 1) -> dict[str, Tensor]:
    return {"x": Tensor("x", "FP32", (rows, d), [0.5] * (rows * d))}


# -- S3 -------------------------------------------------------------------------------------------------


class MotoS3:
    """A moto S3 server in its own process (so its serving does not share this process's interpreter)."""

    def __init__(self, root: Path) -> None:
        self.log_file = root / "moto.log"
        self.endpoint = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> MotoS3:
        self.endpoint = self._stack.enter_context(moto_server(self.log_file))
        # boto3's standard configuration, as the runtime reads it: the loads below go through the same.
        os.environ.update(s3_env(self.endpoint))
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)


def s3_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1"}


# -- 2. cold loads --------------------------------------------------------------------------------------


def cold_loads(root: Path, counts: dict[str, int], progress: Callable[[str], None]) -> dict[str, Any]:
    """Per size bucket, each model fetched alone (boto3 get_object + sha256) and then loaded through the real
    cache's load path with no verified copy of it on disk (so every load downloads). One cache and one
    artefact store per bucket, so their threads live across loads as in a replica (a thread's start is
    not a load's cost)."""
    onnx_format.warm_up()
    out: dict[str, Any] = {}
    with MotoS3(root) as s3:
        client = s3.client()
        for label, size in SIZE_BUCKETS:
            n = counts.get(label, 0)
            if n == 0:
                continue
            objects = []
            for i in range(n):
                data, _ = mlp_onnx(size, seed=1000 + i)
                key = f"tenants/t{i:05d}/m-{size}/1/model.onnx"
                client.put_object(Bucket=BUCKET, Key=key, Body=data)
                objects.append((key, hashlib.sha256(data).hexdigest(), len(data)))
            row = asyncio.run(_cold_bucket(root, client, label, size, objects))
            out[label] = row
            progress(f"cold load {label}: load path p50 {row['load_path']['p50_ms']:.1f} ms vs fetch+sha256 "
                     f"{row['fetch_and_hash']['p50_ms']:.1f} ms ({row['ratio_p50']:.2f}x); steps p50 " +
                     ", ".join(f"{k} {v:.2f} ms" for k, v in row["steps_p50_ms"].items()))
    return out


async def _cold_bucket(root: Path, client: Any, label: str, size: int,
                       objects: list[tuple[str, str, int]]) -> dict[str, Any]:
    store_dir = root / f"artifacts-{label.replace(' ', '')}"
    store = ArtifactStore(store_dir)
    loader = OwnModelLoader(store)
    recorder = _StepRecorder(loader)
    cache = ModelCache(recorder, budget_bytes=1 << 34, min_residency_s=0)
    fetch_s: list[float] = []
    load_s: list[float] = []
    steps: dict[str, list[float]] = {"fetch": [], "build": [], "cache": []}
    footprints: list[int] = []
    for i, (key, digest, _) in enumerate(objects):
        t0 = time.perf_counter()
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        got = hashlib.sha256(body).hexdigest()
        fetch_s.append(time.perf_counter() - t0)
        assert got == digest
        del body
        ref = OwnModelRef.parse(owner=f"t{i:05d}", name=f"m-{size}", version="1", format="onnx",
                                artifact=f"s3://{BUCKET}/{key}", sha256=digest)
        started = time.perf_counter()
        await cache.acquire(ref)
        seconds = time.perf_counter() - started
        load_s.append(seconds)
        footprints.append(cache.resident_bytes())
        for step, took in recorder.steps.items():
            steps[step].append(took)
        # The rest: queueing for a loader slot, the thread hand-offs and admission on the event loop.
        steps["cache"].append(seconds - sum(recorder.steps.values()))
        cache.unload(ref.owner, ref.name)
        store.flush()  # the verified copy's background write, outside the next model's timing
        shutil.rmtree(store_dir / digest)  # no copy of it for a later load: each one downloads
    await cache.close()
    fetch, load_ = latency_stats(fetch_s), latency_stats(load_s)
    return {
        "file_bytes": objects[0][2], "models": len(objects), "fetch_and_hash": fetch, "load_path": load_,
        "steps_p50_ms": {step: float(np.median(v)) * 1000 for step, v in steps.items()},
        "footprint_bytes_median": int(np.median(footprints)),
        "ratio_p50": load_["p50_ms"] / fetch["p50_ms"], "ratio_p99": load_["p99_ms"] / fetch["p99_ms"],
    }


class _StepRecorder:
    """The real loader, keeping the step timings of its last load (``LoadedModel.steps``)."""

    def __init__(self, loader: OwnModelLoader) -> None:
        self.loader = loader
        self.steps: dict[str, float] = {}

    def __call__(self, ref: OwnModelRef) -> LoadedModel:
        loaded = self.loader(ref)
        self.steps = dict(loaded.steps)
        return loaded


def fit_load_time(cold: dict[str, Any]) -> tuple[float, float]:
    """(seconds fixed, bytes per second) fitted to the cold loads' medians, for the simulation's service times."""
    xs = np.array([row["file_bytes"] for row in cold.values()], dtype=float)
    ys = np.array([row["load_path"]["p50_ms"] / 1000 for row in cold.values()])
    if len(xs) < 2:
        return 0.02, 150e6
    slope, intercept = np.polyfit(xs, ys, 1)
    return max(float(intercept), 0.001), 1.0 / max(float(slope), 1e-12)


# -- 4. residency ---------------------------------------------------------------------------------------


def residency(root: Path, budget_mb: int, cycles: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """(a) Fill a cache of ``budget_mb`` with real models of mixed sizes past its budget: resident / budget.
    (b) ``cycles`` load/unload cycles of real models: RSS after warm-up against RSS at the end."""
    onnx_format.warm_up()
    models_dir = root / "residency-models"
    models_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(4)
    fill_models = []
    for i in range(int(budget_mb * 1e6 / 400_000 * 1.6)):
        size = int(math.exp(rng.uniform(math.log(20_000), math.log(2_000_000))))
        path, digest, _ = write_model(models_dir, size, seed=i)
        fill_models.append(local_ref("filler", f"f{i}", path, digest))
    cycle_models = []
    for i in range(20):
        path, digest, d = write_model(models_dir, (20_000, 200_000)[i % 2], seed=10_000 + i)
        cycle_models.append((local_ref("cycler", f"c{i}", path, digest), d))

    async def run() -> dict[str, Any]:
        store = ArtifactStore(root / "residency-artifacts")
        budget = budget_mb * 1024 * 1024
        cache = ModelCache(OwnModelLoader(store), budget_bytes=budget, min_residency_s=0)
        fills = []
        for ref in fill_models:
            await cache.acquire(ref)
            fills.append(cache.resident_bytes() / budget)
        full = fills[len(fills) // 2:]
        await cache.close()
        progress(f"residency: {len(fill_models)} models into {budget_mb} MiB: resident {np.mean(full):.1%} of the "
                 "budget once full")
        cache = ModelCache(OwnModelLoader(store), budget_bytes=1 << 34, min_residency_s=0)
        warm = max(cycles // 10, 1)
        rss: list[tuple[int, int]] = []
        for i in range(cycles):
            ref, d = cycle_models[i % len(cycle_models)]
            model = await cache.acquire(ref)
            model.predict(infer_input(d))
            cache.unload(ref.owner, ref.name)
            if i % 100 == 0 or i == cycles - 1:
                footprint.trim()
                rss.append((i, footprint.resident_bytes()))
            if i and i % 2_000 == 0:
                progress(f"residency: {i:,}/{cycles:,} load/unload cycles, RSS {rss[-1][1] / 1e6:.1f} MB")
        await cache.close()
        after_warm = next(r for i, r in rss if i >= warm)
        end = rss[-1][1]
        return {
            "fill": {"budget_bytes": budget, "models_offered": len(fill_models),
                     "resident_over_budget_once_full": float(np.mean(full)),
                     "resident_over_budget_min_once_full": float(np.min(full))},
            "cycles": {"cycles": cycles, "warm_up_cycles": warm, "rss_after_warm_up_bytes": after_warm,
                       "rss_end_bytes": end, "ratio": end / after_warm, "samples": rss},
        }

    return asyncio.run(run())


# -- 5. fairness ----------------------------------------------------------------------------------------


@dataclass
class FairnessRun:
    a_latency_s: list[float]
    a_evictions: int
    a_bytes_max: int
    a_share_min: float
    b_loads: int
    b_refused: int
    # B's jobs, each of which A may find running when it arrives: its loads and its forward passes.
    b_load_s: list[float]
    b_predict_s: list[float]


def _predict(model: Model, d: int, took: list[float] | None = None) -> list[Tensor]:
    started = time.perf_counter()
    out = model.predict(infer_input(d))
    if took is not None:
        took.append(time.perf_counter() - started)
    return out


def fairness(root: Path, cold_models: int, a_rate: float, duration_s: float,
             progress: Callable[[str], None]) -> dict[str, Any]:
    """Tenant A: 5 warm 200 KB models, holding about half its share of the cache bytes, requests at
    ``a_rate``/s (Poisson); tenant B: ``cold_models`` distinct 20 KB models, one after another as fast as
    the cache admits them (4 at a time). One run with B, one without; the same scheduler (WFQ) and cache as
    a replica, with the cache's loads charged to their tenant."""
    onnx_format.warm_up()
    models_dir = root / "fairness-models"
    models_dir.mkdir(parents=True, exist_ok=True)
    a_models = []
    for i in range(5):
        path, digest, d = write_model(models_dir, 200_000, seed=20_000 + i)
        a_models.append((local_ref("tenant-a", f"a{i}", path, digest), d))
    b_models = []
    for i in range(cold_models):
        path, digest, d = write_model(models_dir, 20_000, seed=30_000 + i)
        b_models.append((local_ref("tenant-b", f"b{i}", path, digest), d))
    store = ArtifactStore(root / "fairness-artifacts")
    # Verified copies on disk first, so the runs differ only in B's loads, not in first downloads.
    for ref, _ in a_models + b_models:
        store.fetch(ref.artifact)

    async def measure_a() -> int:
        cache = ModelCache(OwnModelLoader(store), budget_bytes=1 << 34)
        for ref, _ in a_models:
            await cache.acquire(ref)
        held = cache.resident_bytes()
        await cache.close()
        return held

    a_bytes = asyncio.run(measure_a())
    # A's five models at half its share when A and B both have demand (equal weights: half the budget each).
    budget = a_bytes * 4

    async def run(with_b: bool) -> FairnessRun:
        scheduler = WfqScheduler()
        evicted = {"a": 0}
        b_load_s: list[float] = []
        b_predict_s: list[float] = []

        class Events:
            def cache_hit(self, tenant: str) -> None: ...
            def cache_miss(self, tenant: str) -> None: ...

            def cache_load(self, tenant: str, seconds: float, ok: bool) -> None:
                if tenant == "tenant-b":
                    b_load_s.append(seconds)

            def cache_eviction(self, tenant: str) -> None:
                evicted["a"] += tenant == "tenant-a"

        cache = ModelCache(OwnModelLoader(store), budget_bytes=budget, min_residency_s=1.0,
                           charge=scheduler.charge, events=Events())
        for ref, _ in a_models:
            await cache.acquire(ref)
        stop = asyncio.Event()
        latencies: list[float] = []
        counts = {"loads": 0, "refused": 0, "a_max": 0}
        shares: list[float] = []

        async def a_request(ref: OwnModelRef, d: int) -> None:
            t0 = time.perf_counter()
            model = await cache.acquire(ref, 1.0)
            await scheduler.submit("tenant-a", 1.0, 1.0, functools.partial(_predict, model, d))
            latencies.append(time.perf_counter() - t0)

        async def a_load() -> None:
            rng = random.Random(5)
            tasks = []
            end = time.perf_counter() + duration_s
            while time.perf_counter() < end:
                ref, d = a_models[rng.randrange(len(a_models))]
                tasks.append(asyncio.ensure_future(a_request(ref, d)))
                await asyncio.sleep(rng.expovariate(a_rate))
            await asyncio.gather(*tasks)
            stop.set()

        async def b_worker(k: int) -> None:
            i = k
            while not stop.is_set():
                ref, d = b_models[i % len(b_models)]
                try:
                    model = await cache.acquire(ref, 1.0)
                    counts["loads"] += 1
                    await scheduler.submit("tenant-b", 1.0, 1.0, functools.partial(_predict, model, d, b_predict_s))
                except ModelUnavailableError:
                    counts["refused"] += 1
                    await asyncio.sleep(0.01)
                usage = cache.resident_bytes_by_tenant()
                counts["a_max"] = max(counts["a_max"], usage.get("tenant-a", 0))
                shares.append(usage.get("tenant-a", 0) / budget)
                i += 4

        workers = [asyncio.ensure_future(b_worker(k)) for k in range(4)] if with_b else []
        await a_load()
        await asyncio.gather(*workers)
        await scheduler.close()
        await cache.close()
        return FairnessRun(latencies, evicted["a"], counts["a_max"], min(shares) if shares else 0.0,
                           counts["loads"], counts["refused"], b_load_s, b_predict_s)

    alone = asyncio.run(run(with_b=False))
    progress(f"fairness: A alone p99 {latency_stats(alone.a_latency_s)['p99_ms']:.2f} ms")
    both = asyncio.run(run(with_b=True))
    a_alone, a_both = latency_stats(alone.a_latency_s), latency_stats(both.a_latency_s)
    b_load, b_predict = latency_stats(both.b_load_s), latency_stats(both.b_predict_s)
    # DESIGN.md's aim: A within its p99 alone plus one service time of the flood's (B's) longest job kind,
    # what a server that does not preempt cannot beat; B's median job of that kind is taken.
    b_job_ms = max(b_load.get("p50_ms", 0.0), b_predict.get("p50_ms", 0.0))
    bound_ms = a_alone["p99_ms"] + b_job_ms
    progress(f"fairness: A with B cycling p99 {a_both['p99_ms']:.2f} ms (bound: alone + one B job = "
             f"{bound_ms:.2f} ms); B loaded {both.b_loads} (load p50 {b_load.get('p50_ms', 0):.2f} ms), "
             f"A's models evicted {both.a_evictions} times")
    return {
        "b_load": b_load, "b_predict": b_predict, "b_job_ms": b_job_ms, "bound_ms": bound_ms,
        "p99_over_bound": a_both["p99_ms"] / bound_ms,
        "budget_bytes": budget, "a_model_bytes": a_bytes, "a_rate_per_s": a_rate, "duration_s": duration_s,
        "b_distinct_cold_models": cold_models, "a_alone": a_alone, "a_with_b": a_both,
        "p99_ratio": a_both["p99_ms"] / a_alone["p99_ms"], "p50_ratio": a_both["p50_ms"] / a_alone["p50_ms"],
        "a_evictions_with_b": both.a_evictions, "a_resident_bytes_max": both.a_bytes_max,
        "a_share_of_budget": 0.5, "b_loads": both.b_loads, "b_refused": both.b_refused,
    }

