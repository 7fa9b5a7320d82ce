"""The own-model benchmark's parts through the real Envoy (the local platform: control plane, Envoy, 2 runtime
replicas of one pool): warm p99 of an own model against a catalog model running the same ONNX graph, and
where own models land (ring hash) against least-request, read from each replica's repository index.

Least-request for own models is not something the compiler can be asked for (own-model clusters are always
RING_HASH), so the baseline sends the same requests straight to the replicas, picked by Envoy's
least-request rule (power of two choices on the requests each has in flight), with the headers Envoy's
route would set; both phases use the same models and request sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.models_real import own_copy, write_model
from bench.models_sim import RingHash, request_hash
from bench.report import latency_stats
from inference_images.runtime import gateway as contract
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

REGION = "us-east-1"
POOL = "cpu"
TENANT = "acme"


def write_config(root: Path, gateway_port: int, own: int, budget_mb: int) -> tuple[Path, dict[str, Any]]:
    """One region, one pool of 2 replicas; catalog ``scorer`` (loader onnx) and acme's ``twin`` (the same
    graph, as an own model) plus ``own`` other own models of 20 KB."""
    cfg = root / "config"
    models = cfg / "models" / TENANT  # a tenant's local artifacts live in its own folder of the config
    (cfg / "tenants").mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    scorer, scorer_sha, d = write_model(models, 200_000, seed=1)
    quotas = "{concurrency: 64, requests_per_second: 100000, tokens_per_minute: 1000000000, gpus: 0}"
    (cfg / "tiers.yaml").write_text(
        f"tiers:\n  pro:\n    weight: 2\n    quotas: {quotas}\n"
        "    own_models: {max_per_tenant: 1000, max_bytes_per_model: 50000000, formats: [onnx]}\n")
    (cfg / "regions.yaml").write_text(
        f"regions:\n  - id: {REGION}\n    gateway_port: {gateway_port}\n"
        f"    pools: [{{name: {POOL}, replicas: 2, model_cache_mb: {budget_mb}}}]\n")
    (cfg / "models.yaml").write_text(
        "models:\n  scorer:\n    kind: classifier\n    versions:\n"
        f"      v1: {{pool: {POOL}, loader: onnx, artifact: {scorer}, sha256: {scorer_sha}}}\n")
    own_models: dict[str, Any] = {"twin": {"format": "onnx", "pool": POOL,
                                           "versions": {"1": {"artifact": str(own_copy(cfg, TENANT, scorer)),
                                                              "sha256": scorer_sha}}}}
    dims = {"twin": d}
    for i in range(own):
        path, sha, dim = write_model(models, 20_000, seed=100 + i)
        own_models[f"m{i:03d}"] = {"format": "onnx", "pool": POOL,
                                   "versions": {"1": {"artifact": str(path), "sha256": sha}}}
        dims[f"m{i:03d}"] = dim
    spec = {"id": TENANT, "tier": "pro", "regions": {"home": REGION, "allowed": [REGION]},
            "models": {"scorer": {"split": {"v1": 100}}}, "own_models": own_models}
    (cfg / "tenants" / f"{TENANT}.yaml").write_text(json.dumps(spec))
    return cfg, {"dims": dims, "own_models": own_models}


def body(d: int) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": [1, d], "datatype": "FP32", "data": [0.5] * d}]}).encode()


async def _closed_loop(session: aiohttp.ClientSession, jobs: list[tuple[str, str, bytes, dict[str, str]]],
                       concurrency: int) -> list[tuple[str, int, float, str | None]]:
    """(label, status, seconds, replica) per job, ``concurrency`` at a time, in the given order. The
    replica is its x-fairshare-replica straight from a replica; through a gateway, which removes that header,
    the response's x-request-id, for `_replicas_through` to resolve from the gateway's access log."""
    out: list[tuple[str, int, float, str | None]] = []
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            label, url, data, headers = queue.pop()
            t0 = time.perf_counter()
            async with session.post(url, data=data, headers=headers) as resp:
                await resp.read()
                out.append((label, resp.status, time.perf_counter() - t0, resp.headers.get("x-fairshare-replica")
                            or resp.headers.get("x-request-id")))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def _replicas_through(platform: LocalPlatform, results: list[tuple[str, int, float, str | None]],
                      timeout: float = 30.0) -> list[tuple[str, int, float, str | None]]:
    """`_closed_loop`'s results through a gateway with each request id replaced by the replica that answered
    it, from the gateway's access log (waiting for Envoy to flush it)."""
    ids = {r[3] for r in results if r[3] is not None}
    deadline = time.monotonic() + timeout
    where = platform.served_by()
    while not ids <= where.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        where = platform.served_by()
    return [(label, status, secs, where.get(rid) if rid is not None else None)
            for label, status, secs, rid in results]


def _index(admin_port: int) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/v2/repository/index", data=b"{}", method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(json.load(resp))


def _unload_all(platform: LocalPlatform, names: list[str]) -> None:
    for replica in platform.replicas:
        assert replica.admin_port is not None
        for name in names:
            req = urllib.request.Request(
                f"http://127.0.0.1:{replica.admin_port}/v2/repository/models/{TENANT}:{name}/unload",
                data=b"{}", method="POST", headers={"content-type": "application/json"})
            with contextlib.suppress(urllib.error.HTTPError):  # not resident there
                urllib.request.urlopen(req, timeout=10).close()


def _hit_rates(platform: LocalPlatform, names: set[str]) -> dict[str, Any]:
    per_replica = {}
    for replica in platform.replicas:
        assert replica.admin_port is not None
        rows = [r for r in _index(replica.admin_port)
                if r.get("owner") == TENANT and str(r.get("name", "")).split(":")[-1] in names]
        hits = sum(int(r.get("hits", 0)) for r in rows)
        misses = sum(int(r.get("misses", 0)) for r in rows)
        per_replica[replica.name] = {"hits": hits, "misses": misses, "hit_rate": hits / max(hits + misses, 1),
                                     "models_resident": sum(1 for r in rows if r.get("state") == "ready")}
    hits = sum(int(v["hits"]) for v in per_replica.values())
    total = sum(int(v["hits"]) + int(v["misses"]) for v in per_replica.values())
    return {"per_replica": per_replica, "hit_rate": hits / max(total, 1)}


def run(root: Path, own: int, requests_per_model: int, warm_requests: int, budget_mb: int,
        progress: Callable[[str], None]) -> dict[str, Any]:
    cfg, info = write_config(root, free_port(), own, budget_mb)
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=state, xds_port=free_port(),
                                             status_port=free_port(), runtime_args=("--no-access-log",)))
    progress("platform: starting control plane, Envoy and 2 replicas")
    platform.start()
    try:
        assert platform.config is not None
        token = issue_token(SigningKey.load_or_create(state), platform.config.platform.auth, TENANT)
        return asyncio.run(_measure(platform, token, info, own, requests_per_model, warm_requests, progress))
    finally:
        platform.stop()
        shutil.rmtree(state, ignore_errors=True)


async def _measure(platform: LocalPlatform, token: str, info: dict[str, Any], own: int, per_model: int,
                   warm_requests: int, progress: Callable[[str], None]) -> dict[str, Any]:
    gateway = platform.gateway_url(REGION)
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    dims = info["dims"]
    out: dict[str, Any] = {"replicas": [r.name for r in platform.replicas], "own_models": own}
    async with aiohttp.ClientSession() as session:
        # Wait until Envoy routes both (the first own-model call also loads twin).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = await _closed_loop(session, [
                ("scorer", f"{gateway}/v2/models/scorer/infer", body(dims["twin"]), auth),
                ("twin", f"{gateway}/v2/models/twin/infer", body(dims["twin"]), auth)], 1)
            if all(status == 200 for _, status, _, _ in got):
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"the platform did not serve scorer and twin through Envoy: {got}")
        progress(f"platform: warm p99, {warm_requests} requests each to catalog scorer and own twin, interleaved")
        jobs = []
        for _ in range(warm_requests):
            jobs.append(("scorer", f"{gateway}/v2/models/scorer/infer", body(dims["twin"]), auth))
            jobs.append(("twin", f"{gateway}/v2/models/twin/infer", body(dims["twin"]), auth))
        warm = await _closed_loop(session, jobs[:200], 4)  # warm-up: connections, the worker's estimates
        warm = await _closed_loop(session, jobs, 4)
        bad = [w for w in warm if w[1] != 200]
        catalog = latency_stats([s for label, status, s, _ in warm if label == "scorer" and status == 200])
        own_stats = latency_stats([s for label, status, s, _ in warm if label == "twin" and status == 200])
        out["warm"] = {"catalog": catalog, "own": own_stats, "errors": len(bad), "concurrency": 4,
                       "p99_ratio": own_stats["p99_ms"] / catalog["p99_ms"],
                       "p50_ratio": own_stats["p50_ms"] / catalog["p50_ms"]}
        progress(f"platform: warm p99 own {own_stats['p99_ms']:.2f} ms vs catalog {catalog['p99_ms']:.2f} ms")

        names = [f"m{i:03d}" for i in range(own)]
        rng = random.Random(7)
        sequence = [n for n in names for _ in range(per_model)]
        rng.shuffle(sequence)
        _unload_all(platform, names)
        progress(f"platform: routing, {len(sequence)} requests over {own} own models through Envoy (ring hash)")
        routed = await _closed_loop(session, [(n, f"{gateway}/v2/models/{n}/infer", body(dims[n]), auth)
                                              for n in sequence], 4)
        hashed = _hit_rates(platform, set(names))
        by_model: dict[str, Counter[str]] = {}
        routed = _replicas_through(platform, routed)
        for name, status, _, replica in routed:
            if status == 200 and replica is not None:
                by_model.setdefault(name, Counter())[replica] += 1
        one_replica = sum(1 for c in by_model.values() if len(c) == 1)
        served = sum(sum(c.values()) for c in by_model.values())
        majority = sum(max(c.values()) for c in by_model.values()) / max(served, 1)
        # Our ring (bench/models_sim.RingHash) against Envoy's choice: same hosts, same keys.
        ring = RingHash([f"127.0.0.1:{r.port}" for r in platform.replicas])
        served_as = [f"{r.region}/{r.pool}/{r.replica}" for r in platform.replicas]  # its x-fairshare-replica
        predicted = {n: served_as[ring.pick(request_hash(TENANT, n))] for n in names}
        agree = sum(1 for n, c in by_model.items() if c.most_common(1)[0][0] == predicted[n])
        out["hash"] = {**hashed, "models_on_one_replica": one_replica, "models": len(by_model),
                       "requests_on_models_main_replica": majority, "errors": sum(1 for r in routed if r[1] != 200),
                       "simulator_ring_agrees_with_envoy": agree}
        progress(f"platform: ring hash hit rate {hashed['hit_rate']:.1%}, {one_replica}/{len(by_model)} models on one "
                 f"replica; the simulator's ring picks Envoy's replica for {agree}/{len(by_model)}")

        _unload_all(platform, names)
        progress("platform: the same requests straight to the replicas by least-request (P2C)")
        active = [0] * len(platform.replicas)
        results: list[int] = []
        queue = list(reversed(sequence))

        async def worker() -> None:
            while queue:
                name = queue.pop()
                a, b = rng.randrange(len(active)), rng.randrange(len(active))
                r = b if active[b] < active[a] else a
                replica = platform.replicas[r]
                version = info["own_models"][name]["versions"]["1"]
                headers = {"content-type": "application/json", contract.TENANT_HEADER: TENANT,
                           contract.MODEL_OWNER_HEADER: TENANT, contract.MODEL_FORMAT_HEADER: "onnx",
                           contract.MODEL_VERSION_HEADER: "1", contract.MODEL_ARTIFACT_HEADER: version["artifact"],
                           contract.MODEL_SHA256_HEADER: version["sha256"]}
                active[r] += 1
                try:
                    async with session.post(f"http://127.0.0.1:{replica.port}/v2/models/{name}/infer",
                                            data=body(dims[name]), headers=headers) as resp:
                        await resp.read()
                        results.append(resp.status)
                finally:
                    active[r] -= 1

        await asyncio.gather(*(worker() for _ in range(4)))
        least = _hit_rates(platform, set(names))
        out["least_request"] = {**least, "errors": sum(1 for s in results if s != 200)}
        progress(f"platform: least-request hit rate {least['hit_rate']:.1%}")
    return out
