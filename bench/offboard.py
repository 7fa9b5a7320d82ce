"""Offboarding one tenant among many, on bench/controlplane.py's rig (one Envoy on the real xDS server, fed
by the real ControlPlane watching the config, with Envoy's pre-publish validation; one runtime replica with
its admin port): the tenant brings 10 own models (bench/synth.py's tenants, bench/models_real.py's ONNX
model), holds them loaded, and is offboarded with the real `Offboarding` steps against the control plane's
status app (AWS steps skipped: no account here). Measured from the tenant file's mark: its routes gone
from Envoy (every Envoy's ACK; target 1 s), and its first refusal at the gateway while it keeps calling.
Baseline in the same run: one tenant's edit served (bench/controlplane.py's `edit_served`).

    python -m bench.offboard [--tenants 10000]

Writes bench/results/offboard.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench import report
from bench.controlplane import EDITED, POOL, REGION, Rig, edit_served
from bench.models_controlplane import PER_TENANT, _with_own
from bench.models_real import write_model
from bench.report import environment, markdown_table, write_results
from bench.synth import tenant_id, write_config
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import Endpoint, EndpointDirectory
from xds_server.config import load_config
from xds_server.controlplane.http import status_app
from xds_server.local.processes import Child, free_port, wait_http
from xds_server.offboard import http as offboard_http
from xds_server.offboard.run import Offboarding, Options, state_path

TARGET_ROUTES_GONE_S = 1.0
OFFBOARDED = 0  # an enterprise tenant (synth: i % 3 == 0), so its tier allows own models

progress = functools.partial(report.progress, "offboard")


async def _refused_at(port: int, token: str, stop: asyncio.Event) -> dict[str, Any]:
    """Call the tenant's classifier back to back until the gateway refuses it; when (time.time()), and
    what every reply was."""
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["fine"]}]}).encode()
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.post(f"http://127.0.0.1:{port}/v2/models/classifier/infer", data=body,
                                    headers={"authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                at = time.time()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if resp.status in (401, 403, 404):
                return {"refused_at": at, "status": resp.status, "replies": statuses}
    return {"refused_at": None, "replies": statuses}


async def _own_models_loaded(admin: str, tenant: str) -> int:
    async with aiohttp.ClientSession() as session, session.post(f"{admin}/v2/repository/index") as resp:
        rows = await resp.json()
    return sum(1 for r in rows
               if str(r.get("name", "")).startswith(f"{tenant}:") and str(r.get("state", "")).upper() == "READY")


def _plaintext_upstream(config_dir: Path) -> None:
    """Envoy to the replica in plaintext: this measures the control plane and the offboarding, and the
    bench's replica is started without the local CA's certificates."""
    path = config_dir / "platform.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("gateway", {}).setdefault("upstream_tls", {})["enabled"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def run(tenants: int, root: Path) -> dict[str, Any]:
    key = SigningKey.load_or_create(root / "state")
    runtime_port, admin_port, gateway_port, status_port = free_port(), free_port(), free_port(), free_port()
    endpoints = root / "endpoints.yaml"
    EndpointDirectory({(REGION, POOL): (Endpoint("127.0.0.1", runtime_port, admin_port=admin_port,
                                                 name="bench-r1"),)}).dump(endpoints)
    artifact, sha, d = write_model(root, 20_000, seed=5)
    runtime = Child("runtime", [sys.executable, "-m", "inference_images.runtime", "--region", REGION, "--pool",
                                POOL, "--port", str(runtime_port), "--admin-port", str(admin_port), "--replica",
                                "bench-r1", "--no-access-log", "--model", "classifier:v1:lexicon",
                                "--model", "classifier:v2:lexicon-negation"], root / "runtime.log").start()
    config_dir = root / "config"
    rig = Rig(root, endpoints, key)
    runner: web.AppRunner | None = None
    stop = asyncio.Event()
    tenant = tenant_id(OFFBOARDED)
    try:
        wait_http(f"http://127.0.0.1:{runtime_port}/v2/health/ready", 60, proc=runtime.proc,
                  log_file=runtime.log_file)
        progress(f"{tenants:,} tenants, {tenant} with {PER_TENANT} own models: first load and apply")
        write_config(config_dir, tenants, ports=(gateway_port, free_port()))
        _plaintext_upstream(config_dir)
        _with_own(config_dir, OFFBOARDED, artifact, sha)
        await rig.start(config_dir)
        assert rig.cp is not None
        auth = load_config(config_dir).platform.auth

        progress("baseline: one tenant's edit served (bench/controlplane.py)")
        baseline = await edit_served(rig, config_dir, f"http://127.0.0.1:{gateway_port}",
                                     issue_token(key, auth, tenant_id(EDITED)))
        await rig.publish_and_apply()  # edit_served put the tenant back; serve that before offboarding
        progress(f"baseline: edit published {baseline['published_s']:.2f}s, ACKed {baseline['applied_s']:.2f}s, "
                 f"served {baseline['served_s']:.2f}s")

        # The control plane's status app with the offboarding's routes, as `fairshare serve` runs it.
        app = status_app(rig.cp)
        offboard_http.add_routes(app, rig.cp, lambda: None)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", status_port).start()
        watcher = asyncio.create_task(rig.cp.watch(stop))
        await asyncio.sleep(0.5)  # the watch is armed

        token = issue_token(key, auth, tenant)
        x = json.dumps({"inputs": [{"name": "x", "shape": [1, d], "datatype": "FP32", "data": [0.5] * d}]}).encode()
        async with aiohttp.ClientSession() as session:
            for m in range(PER_TENANT):
                async with session.post(f"http://127.0.0.1:{gateway_port}/v2/models/m{m}/infer", data=x,
                                        headers={"authorization": f"Bearer {token}"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{tenant}'s own model m{m} answered {resp.status} before offboarding")
        loaded_before = await _own_models_loaded(f"http://127.0.0.1:{admin_port}", tenant)

        progress(f"offboarding {tenant} (AWS steps skipped) while it keeps calling")
        refused = asyncio.create_task(_refused_at(gateway_port, token, stop))
        job = Offboarding(Options(tenant=tenant, config_dir=config_dir, state_dir=root / "state",
                                  status_url=f"http://127.0.0.1:{status_port}", no_aws=True),
                          progress=lambda line: progress(line.strip()))
        t0 = time.perf_counter()
        receipt, _ = await asyncio.to_thread(job.run)
        total_s = time.perf_counter() - t0
        seen = await asyncio.wait_for(refused, timeout=30)
        stop.set()
        watcher.cancel()
        steps = json.loads(state_path(root / "state", tenant).read_text())["steps"]
        marked = datetime.fromisoformat(steps["mark"]["at"]).timestamp()
        at = {s: datetime.fromisoformat(v["at"]).timestamp() for s, v in steps.items()}
        order = list(steps)
        step_s = {s: at[s] - (at[order[i - 1]] if i else at[s]) for i, s in enumerate(order)}
        routes_gone_s = float(steps["routes"]["seconds_since_mark"])
        refused_s = seen["refused_at"] - marked if seen["refused_at"] else None
        loaded_after = await _own_models_loaded(f"http://127.0.0.1:{admin_port}", tenant)
        progress(f"routes gone from Envoy {routes_gone_s:.2f}s after the mark (target {TARGET_ROUTES_GONE_S:.0f}s); "
                 f"first refusal at the gateway {refused_s if refused_s is None else round(refused_s, 2)}s; "
                 f"whole offboarding {total_s:.2f}s")
        return {
            "tenants": tenants, "offboarded": tenant, "own_models": PER_TENANT,
            "routes_gone_s": routes_gone_s, "gateway_refused_s": refused_s, "gateway_replies": seen["replies"],
            "target_routes_gone_s": TARGET_ROUTES_GONE_S, "met": routes_gone_s <= TARGET_ROUTES_GONE_S,
            "offboard_total_s": total_s, "step_s": step_s,
            "own_models_loaded_before": loaded_before, "own_models_loaded_after": loaded_after,
            "receipt_steps": [s["step"] for s in receipt["steps"]],
            "baseline_edit": baseline, "ratio_to_edit_applied": routes_gone_s / baseline["applied_s"],
            "environment": environment(),
        }
    finally:
        stop.set()
        if runner is not None:
            await runner.cleanup()
        await rig.stop()
        runtime.stop()
        shutil.rmtree(config_dir, ignore_errors=True)


def render(r: dict[str, Any]) -> str:
    rows = [
        ["offboarded tenant's routes gone from Envoy (mark -> every ACK)", f"{r['routes_gone_s']:.3f}",
         f"<= {r['target_routes_gone_s']:.0f}", "met" if r["met"] else "missed"],
        ["its first refusal at the gateway, after the mark",
         "n/a" if r["gateway_refused_s"] is None else f"{r['gateway_refused_s']:.3f}", "", ""],
        ["baseline: one tenant's edit published", f"{r['baseline_edit']['published_s']:.3f}", "", ""],
        ["baseline: one tenant's edit ACKed", f"{r['baseline_edit']['applied_s']:.3f}", "", ""],
        ["baseline: one tenant's edit served", f"{r['baseline_edit']['served_s']:.3f}", "", ""],
        ["whole offboarding (every step, AWS skipped)", f"{r['offboard_total_s']:.3f}", "", ""],
    ]
    steps = markdown_table(["step", "seconds after the previous one"],
                           [[s, f"{v:.3f}"] for s, v in r["step_s"].items()])
    return (f"# Offboarding one tenant among {r['tenants']:,}\n\n"
            f"{r['offboarded']} with {r['own_models']} own models (loaded on the replica: "
            f"{r['own_models_loaded_before']} before, {r['own_models_loaded_after']} after); one Envoy, one "
            "runtime replica, the control plane watching the config. The routes figure is the offboarding's own "
            "measurement (`routes.seconds_since_mark` in its state): from writing `offboard: true` to the "
            "control plane reporting every Envoy's ACK. Baseline in the same run: bench/controlplane.py's "
            "one-tenant edit.\n\n"
            + markdown_table(["measure", "seconds", "target", ""], rows)
            + f"\n\nRoutes gone / edit ACKed: {r['ratio_to_edit_applied']:.2f}x. Gateway replies to the "
            f"offboarded tenant while it happened: {r['gateway_replies']}.\n\n## Steps\n\n{steps}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.offboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-offboard-") as tmp:
        results = asyncio.run(run(args.tenants, Path(tmp)))
    path = write_results("offboard", results, render(results))
    print(render(results))
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
