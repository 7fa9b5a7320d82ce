"""The own-model benchmark's control-plane part, on ``bench/controlplane.py``'s rig (one Envoy on the real xDS
server, fed by the real ControlPlane with Envoy's pre-publish validation, one runtime replica behind it):
``tenants`` synthetic tenants (``bench/synth.py``); one tenant's edit (its split) against onboarding
``onboard`` own models across the enterprise tenants in one change, each timed from reload to Envoy's ACK,
then a sample of the new models called through Envoy (servable); then more tenants onboarded in a second
change up to ``scale`` own models in all (10,000: the issue's count), sampled again; Envoy's memory before
any own model, after the first change and at ``scale``, per own model.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.controlplane import POOL, REGION, Rig
from bench.models_real import own_copy, write_model
from bench.synth import tenant_id, tenant_spec, write_config, write_tenant
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import Endpoint, EndpointDirectory
from xds_server.config import load_config
from xds_server.local.processes import Child, free_port, wait_http

PER_TENANT = 10


def _enterprise(tenants: int, count: int | None = None) -> list[int]:
    """The first `count` enterprise tenants (all of them with None)."""
    picked = [i for i in range(tenants) if i % 3 == 0]  # synth.TIERS[0] is enterprise
    if count is None:
        return picked
    picked = picked[:count]
    if len(picked) < count:
        raise ValueError(f"{tenants} tenants have {len(picked)} enterprise tenants; {count} needed")
    return picked


def _with_own(config_dir: Path, i: int, artifact: Path, sha: str) -> None:
    spec = tenant_spec(i)
    artifact = own_copy(config_dir, tenant_id(i), artifact)
    spec["own_models"] = {f"m{k}": {"format": "onnx", "pool": POOL,
                                    "versions": {"1": {"artifact": str(artifact), "sha256": sha}}}
                          for k in range(PER_TENANT)}
    (config_dir / "tenants" / f"{tenant_id(i)}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def run(root: Path, tenants: int, onboard: int, progress: Callable[[str], None],
        scale: int = 10_000) -> dict[str, Any]:
    return asyncio.run(_run(root, tenants, onboard, progress, scale))


async def _run(root: Path, tenants: int, onboard: int, progress: Callable[[str], None],
               scale: int) -> dict[str, Any]:
    key = SigningKey.load_or_create(root / "state")
    runtime_port, gateway_port = free_port(), free_port()
    endpoints = root / "endpoints.yaml"
    EndpointDirectory({(REGION, POOL): (Endpoint("127.0.0.1", runtime_port),)}).dump(endpoints)
    artifact, sha, d = write_model(root, 20_000, seed=3)
    runtime = Child("runtime", [sys.executable, "-m", "inference_images.runtime", "--region", REGION, "--pool",
                                POOL, "--port", str(runtime_port), "--replica", "bench", "--no-access-log",
                                "--model", "classifier:v1:lexicon", "--model", "classifier:v2:lexicon-negation"],
                    root / "runtime.log").start()
    config_dir = root / "config"
    rig = Rig(root, endpoints, key)
    try:
        wait_http(f"http://127.0.0.1:{runtime_port}/v2/health/ready", 60, proc=runtime.proc,
                  log_file=runtime.log_file)
        progress(f"control plane: {tenants:,} tenants, first load and apply")
        write_config(config_dir, tenants, ports=(gateway_port, free_port()))
        t0 = time.perf_counter()
        await rig.start(config_dir)
        initial_s = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        alloc0, rss0 = await asyncio.to_thread(rig.memory)
        edits = []
        for split in ((0, 100), (90, 10), (0, 100)):
            write_tenant(config_dir, 1, split=split)
            build_s, apply_s = await rig.publish_and_apply()
            edits.append(build_s + apply_s)
        edit_s = sorted(edits)[1]
        progress(f"control plane: one tenant's edit applied in {edit_s:.2f}s (median of 3)")
        owners = _enterprise(tenants, onboard // PER_TENANT)
        for i in owners:
            _with_own(config_dir, i, artifact, sha)
        build_s, apply_s = await rig.publish_and_apply()
        onboard_s = build_s + apply_s
        progress(f"control plane: {len(owners) * PER_TENANT:,} own models onboarded in one change: "
                 f"{onboard_s:.2f}s ({onboard_s / edit_s:.2f}x the edit)")
        token_cfg = load_config(config_dir).platform.auth

        def sample(picked: list[int]) -> list[tuple[str, str]]:
            return [(tenant_id(i), issue_token(key, token_cfg, tenant_id(i)))
                    for i in picked[:: max(len(picked) // 10, 1)]]

        servable = await _servable(gateway_port, sample(owners), d)
        await asyncio.sleep(1.0)
        alloc1, rss1 = await asyncio.to_thread(rig.memory)
        n = len(owners) * PER_TENANT
        # As many more as the enterprise tenants can hold, up to `scale` own models in all.
        more = _enterprise(tenants)[len(owners):max(len(owners), scale // PER_TENANT)]
        for i in more:
            _with_own(config_dir, i, artifact, sha)
        scale_build_s, scale_apply_s = await rig.publish_and_apply() if more else (0.0, 0.0)
        n_scale = n + len(more) * PER_TENANT
        progress(f"control plane: {len(more) * PER_TENANT:,} more own models in a second change ({n_scale:,} in "
                 f"all): {scale_build_s + scale_apply_s:.2f}s")
        servable_scale = await _servable(gateway_port, sample(more), d) if more else {"called": 0, "ok": 0}
        await asyncio.sleep(1.0)
        alloc2, rss2 = await asyncio.to_thread(rig.memory)
        per_model = (alloc2 - alloc0) / n_scale
        progress(f"control plane: Envoy +{(alloc1 - alloc0) / n / 1024:.1f} KiB per own model at {n:,}, "
                 f"+{per_model / 1024:.1f} KiB at {n_scale:,}")
        return {
            "tenants": tenants, "initial_apply_s": initial_s, "edit_s": edit_s, "edit_s_each": edits,
            "onboard_models": n, "onboard_tenants": len(owners), "onboard_build_s": build_s,
            "onboard_apply_s": apply_s, "onboard_s": onboard_s, "ratio": onboard_s / edit_s,
            "servable_sample": servable,
            "scale_models": n_scale, "scale_tenants": len(owners) + len(more),
            "scale_build_s": scale_build_s, "scale_apply_s": scale_apply_s, "servable_sample_scale": servable_scale,
            "envoy_alloc_before_bytes": alloc0, "envoy_alloc_onboard_bytes": alloc1, "envoy_alloc_after_bytes": alloc2,
            "envoy_rss_before_bytes": rss0, "envoy_rss_onboard_bytes": rss1, "envoy_rss_after_bytes": rss2,
            "envoy_alloc_per_own_model_at_onboard_bytes": (alloc1 - alloc0) / n,
            # At `scale_models` own models: what the Envoy-memory target reads.
            "envoy_alloc_per_own_model_bytes": per_model,
        }
    finally:
        await rig.stop()
        runtime.stop()
        shutil.rmtree(config_dir, ignore_errors=True)


async def _servable(port: int, tokens: list[tuple[str, str]], d: int) -> dict[str, int]:
    """Call m0 and m9 of each sampled tenant through Envoy; how many answered 200."""
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, d], "datatype": "FP32", "data": [0.5] * d}]}).encode()
    ok = total = 0
    async with aiohttp.ClientSession() as session:
        for _tenant, token in tokens:
            for model in ("m0", f"m{PER_TENANT - 1}"):
                total += 1
                async with session.post(f"http://127.0.0.1:{port}/v2/models/{model}/infer", data=body,
                                        headers={"authorization": f"Bearer {token}",
                                                 "content-type": "application/json"}) as resp:
                    await resp.read()
                    ok += resp.status == 200
    return {"called": total, "ok": ok}
