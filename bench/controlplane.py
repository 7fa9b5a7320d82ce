"""Control-plane scaling: compile, push and apply at 100, 1,000 and 10,000 tenants; one tenant edited
among them; Envoy's memory per tenant. Every ratio is against a baseline measured in the same run.

    python -m bench.controlplane [--tenants 100 1000 10000] [--repeats 3]

Writes bench/results/controlplane.{json,md} and controlplane_scaling.png.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import report
from bench.cells_runtime import runtime
from bench.loadgen import Target, infer_body, one
from bench.report import environment, markdown_table, results_dir, write_results
from bench.synth import tenant_id, write_config, write_tenant
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import Endpoint, EndpointDirectory, naming
from xds_server.config import load_config
from xds_server.controlplane.service import ControlPlane
from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.process import EnvoyProcess, find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.local.processes import free_port
from xds_server.snapshot import CLUSTER
from xds_server.xds.server import XdsServer
from xds_server.xds.store import SnapshotStore

REGION = "us-east-1"
POOL = "cpu-general"
TARGET_APPLY_S = 10.0  # 10,000 tenants compiled and applied
TARGET_EDIT_S = 1.0  # one tenant's edit served
EDITED = 1  # a US-only tenant with a 90/10 split


progress = functools.partial(report.progress, "controlplane")


@dataclass
class Rig:
    """One Envoy on a fresh xDS server, fed by a real ControlPlane watching a config directory."""

    root: Path
    endpoints_file: Path
    key: SigningKey
    tenant_stats: bool = False
    store: SnapshotStore = field(default_factory=SnapshotStore)
    xds: XdsServer | None = None
    envoy: EnvoyProcess | None = None
    cp: ControlPlane | None = None

    async def start(self, config_dir: Path) -> None:
        self.xds = XdsServer(self.store, "127.0.0.1", 0)
        await self.xds.start()
        # As `fairshare serve` runs it: changes are validated by Envoy before they are published.
        self.cp = ControlPlane(config_dir, self.endpoints_file, self.key.jwks(), self.store, "127.0.0.1",
                               validator=EnvoyValidator(find_envoy()))
        await self.publish_and_apply()
        boot = bootstrap("bench-gateway", REGION, "127.0.0.1", self.xds.bound_port, 0, delta=True,
                         stats_matcher=None if self.tenant_stats else naming.tenant_cluster_stats_off())
        self.envoy = EnvoyProcess(boot, self.root / f"envoy-{time.monotonic_ns()}", name="bench", concurrency=2,
                                  log_level="warning")
        self.envoy.start()
        await self.store.wait_applied(REGION, self.version(), timeout=120)
        await asyncio.to_thread(self.envoy.wait_ready, 60)

    async def publish_and_apply(self) -> tuple[float, float]:
        """Load + validate + compile + publish, then wait for Envoy's ACK: (build_s, apply_s)."""
        assert self.cp is not None
        t0 = time.perf_counter()
        outcome = self.cp.reload()
        if not outcome.ok:
            raise RuntimeError(outcome.error)
        t1 = time.perf_counter()
        if self.envoy is not None:
            await self.store.wait_applied(REGION, self.version(), timeout=300)
        return t1 - t0, time.perf_counter() - t1

    def version(self) -> str:
        published = self.store.published(REGION)
        assert published is not None
        return published.snapshot.version

    def memory(self) -> tuple[int, int]:
        """(bytes Envoy's allocator holds, resident set size)."""
        assert self.envoy is not None and self.envoy.pid is not None
        status = Path(f"/proc/{self.envoy.pid}/status").read_text()
        rss_kb = int(status.split("VmRSS:")[1].split()[0])
        return self.envoy.memory_bytes(), rss_kb * 1024

    async def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self.xds is not None:
            await self.xds.stop(0)


async def edit_served(rig: Rig, config_dir: Path, gateway: str, token: str) -> dict[str, float]:
    """Write one tenant's new split (90/10 -> 0/100) and time until Envoy serves only the new version."""
    assert rig.cp is not None
    target = Target(f"{gateway}/v2/models/classifier/infer", token, infer_body(["fine"]))
    stop = asyncio.Event()
    watcher = asyncio.create_task(rig.cp.watch(stop))
    await asyncio.sleep(0.5)  # the watch is armed
    before = rig.version()
    published_s: float | None = None
    served_s: float | None = None
    acked: asyncio.Task[float] | None = None
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        write_tenant(config_dir, EDITED, split=(0, 100))
        streak_start, streak = 0.0, 0
        while served_s is None and time.perf_counter() < t0 + 30:
            if published_s is None and rig.version() != before:
                published_s = time.perf_counter() - t0
                acked = asyncio.create_task(_acked_after(rig, t0))
            sent = time.perf_counter()
            r = await one(session, target)
            if r.ok and r.model_version == "v2":
                streak_start = sent if streak == 0 else streak_start
                streak += 1
                # 10 in a row: under the old 90/10 split that happens once in 10^10.
                if streak >= 10:
                    served_s = streak_start - t0
            else:
                streak = 0
    applied_s = await acked if acked is not None else float("nan")
    stop.set()
    watcher.cancel()
    write_tenant(config_dir, EDITED)
    if served_s is None or published_s is None:
        raise RuntimeError("the edit was not served within 30 s")
    return {"published_s": published_s, "applied_s": applied_s, "served_s": served_s}


def cold_compile_s(config_dir: Path) -> float:
    """A fresh control plane's first load + compile + publish (to a store no Envoy reads), no validation."""
    cp = ControlPlane(config_dir, None, '{"keys": []}', SnapshotStore())
    started = time.perf_counter()
    if not cp.reload().ok:
        raise RuntimeError(cp.last.error if cp.last else "reload failed")
    return time.perf_counter() - started


async def _acked_after(rig: Rig, t0: float) -> float:
    await rig.store.wait_applied(REGION, rig.version(), timeout=30)
    return time.perf_counter() - t0


def write_plain_config(config_dir: Path, n: int, gateway_port: int) -> None:
    """The synthetic config with plaintext upstreams: the bench's one runtime serves no TLS and its Envoy
    has no SDS files (the example config turns platform.gateway.upstream_tls on)."""
    write_config(config_dir, n, ports=(gateway_port, free_port()))
    path = config_dir / "platform.yaml"
    data = yaml.safe_load(path.read_text())
    data["gateway"]["upstream_tls"]["enabled"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def measure(n: int, root: Path, endpoints: Path, key: SigningKey, gateway_port: int,
                  tenant_stats: bool, with_edit: bool) -> dict[str, Any]:
    config_dir = root / f"config-{n}"
    write_plain_config(config_dir, 0, gateway_port)
    rig = Rig(root, endpoints, key, tenant_stats=tenant_stats)
    try:
        await rig.start(config_dir)
        base_alloc, base_rss = await asyncio.to_thread(rig.memory)
        progress(f"{n} tenants: writing config")
        write_plain_config(config_dir, n, gateway_port)
        progress(f"{n} tenants: load + compile alone (cold), for the growth comparison")
        compile_s = cold_compile_s(config_dir)
        progress(f"{n} tenants: load + compile + validate + publish, then wait for Envoy's ACK")
        build_s, apply_s = await rig.publish_and_apply()
        snapshot = rig.store.get(REGION)
        assert snapshot is not None
        await asyncio.sleep(1.0)  # let workers settle before reading memory
        alloc, rss = await asyncio.to_thread(rig.memory)
        row: dict[str, Any] = {
            "tenants": n, "per_tenant_cluster_stats": tenant_stats,
            "compile_s": compile_s, "build_s": build_s, "apply_s": apply_s, "total_s": build_s + apply_s,
            "resources": snapshot.count(), "clusters": len(snapshot.of_type(CLUSTER)),
            "tenant_clusters_per_tenant": sum(name.startswith(naming.TENANT_CLUSTER_PREFIX)
                                              for name in snapshot.of_type(CLUSTER)) / max(n, 1),
            "snapshot_bytes": snapshot.total_bytes(),
            "envoy_alloc_bytes": alloc, "envoy_rss_bytes": rss,
            "envoy_baseline_alloc_bytes": base_alloc, "envoy_baseline_rss_bytes": base_rss,
            "alloc_per_tenant_bytes": (alloc - base_alloc) / n, "rss_per_tenant_bytes": (rss - base_rss) / n,
        }
        progress(f"{n} tenants: built {build_s:.2f}s, applied {apply_s:.2f}s, "
                 f"Envoy +{(alloc - base_alloc) / n / 1024:.1f} KiB/tenant")
        if with_edit:
            token = issue_token(key, load_config(config_dir).platform.auth, tenant_id(EDITED))
            row["edit"] = await edit_served(rig, config_dir, f"http://127.0.0.1:{gateway_port}", token)
            progress(f"{n} tenants: one tenant's edit served after {row['edit']['served_s']:.2f}s")
        return row
    finally:
        await rig.stop()
        shutil.rmtree(config_dir, ignore_errors=True)


async def run(sizes: list[int], repeats: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fairshare-bench-cp-"))
    key = SigningKey.load_or_create(root / "state")
    runtime_port, gateway_port = free_port(), free_port()
    endpoints = root / "endpoints.yaml"
    EndpointDirectory({(REGION, POOL): (Endpoint("127.0.0.1", runtime_port),)}).dump(endpoints)
    try:
        with runtime(root, runtime_port):
            rows = []
            for n in sizes:
                runs = [await measure(n, root, endpoints, key, gateway_port, tenant_stats=False, with_edit=True)
                        for _ in range(repeats)]
                rows.append(median_row(runs))
            largest = max(sizes)
            progress(f"{largest} tenants again with per-tenant cluster stats on (the setting's cost)")
            with_stats = await measure(largest, root, endpoints, key, gateway_port, tenant_stats=True,
                                       with_edit=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return summarise(rows, with_stats)


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Timings are the median of the runs (this machine's neighbours make single runs noisy); sizes and
    memory come from the last run, they do not vary."""
    row = dict(runs[-1])
    for key in ("compile_s", "build_s", "apply_s", "total_s"):
        row[key] = statistics.median(r[key] for r in runs)
    row["edit"] = {k: statistics.median(r["edit"][k] for r in runs) for k in runs[-1]["edit"]}
    row["runs"] = len(runs)
    row["total_s_each_run"] = [r["total_s"] for r in runs]
    return row


def summarise(rows: list[dict[str, Any]], with_stats: dict[str, Any]) -> dict[str, Any]:
    small, large = rows[0], rows[-1]
    growth = {
        # Per-tenant cost at the largest size over the smallest: 1.0 is linear, above 1 worse.
        # Load + compile alone: the control plane's own work, without the validation a large first
        # change skips.
        "compile_per_tenant": (large["compile_s"] / large["tenants"]) / (small["compile_s"] / small["tenants"]),
        "apply_per_tenant": (large["apply_s"] / large["tenants"]) / (small["apply_s"] / small["tenants"]),
    }
    return {
        "benchmark": "controlplane",
        "environment": environment(),
        "rows": rows,
        "with_tenant_stats": with_stats,
        "ratios": {
            "growth_vs_smallest": growth,
            "edit_served_vs_full_apply": large["edit"]["served_s"] / large["total_s"],
            "tenant_stats_apply": with_stats["apply_s"] / large["apply_s"],
            "tenant_stats_memory": with_stats["alloc_per_tenant_bytes"] / large["alloc_per_tenant_bytes"],
        },
        "targets": {
            "total_s_at_largest": {"target": TARGET_APPLY_S, "value": large["total_s"],
                                   "met": large["total_s"] < TARGET_APPLY_S},
            "edit_served_s_at_largest": {"target": TARGET_EDIT_S, "value": large["edit"]["served_s"],
                                         "met": large["edit"]["served_s"] < TARGET_EDIT_S},
            "growth_no_worse_than_linear": {"target": 1.25, "value": max(growth.values()),
                                            # 1.0 is linear; 25% allows for noise on 2 shared cores.
                                            "met": max(growth.values()) <= 1.25},
        },
    }


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    table = markdown_table(
        ["tenants", "clusters", "snapshot MB", "load+compile+publish s", "Envoy apply s", "total s",
         "Envoy alloc MB", "KiB/tenant", "edit: published s", "edit: ACKed s", "edit: served s"],
        [[r["tenants"], r["clusters"], round(r["snapshot_bytes"] / 1e6, 2), round(r["build_s"], 2),
          round(r["apply_s"], 2), round(r["total_s"], 2), round(r["envoy_alloc_bytes"] / 1e6),
          round(r["alloc_per_tenant_bytes"] / 1024, 1), round(r["edit"]["published_s"], 2),
          round(r["edit"]["applied_s"], 2), round(r["edit"]["served_s"], 2)] for r in rows],
    )
    ws = results["with_tenant_stats"]
    t = results["targets"]
    ratios = results["ratios"]
    growth = ratios["growth_vs_smallest"]
    verdict = "\n".join(f"- {name}: {v['value']:.2f} (target {'<' if 'growth' not in name else '<='} "
                        f"{v['target']}) — {'met' if v['met'] else 'NOT met'}" for name, v in t.items())
    return f"""# Control plane scaling

One Envoy ({REGION}, 2 workers) on Fairshare's xDS server (delta ADS), fed by the real ControlPlane.
Synthetic tenants: a quarter also allowed in the EU; the rest a 90/10 canary split (one cluster per
tenant and model, its versions subsets of it: docs/design/0001; before that, one per version).
"load+compile+publish" includes Envoy's pre-publish validation of what changed (skipped, with a
warning, for a change of over 5,000 resources: here the 10,000-tenant load). "Envoy apply" is publish
until Envoy ACKs every resource; "edit: served" is from writing one tenant's file until 10 requests
in a row through Envoy show the new split. Timings: median of {rows[0]['runs']} runs per size.

{table}

With per-tenant cluster stats on, at {ws['tenants']} tenants: apply {ws['apply_s']:.2f}s
({ratios['tenant_stats_apply']:.2f}x), Envoy {ws['alloc_per_tenant_bytes'] / 1024:.1f} KiB/tenant
({ratios['tenant_stats_memory']:.2f}x).

Growth of per-tenant cost from {rows[0]['tenants']} to {rows[-1]['tenants']} tenants (1.0 = linear):
load+compile {growth['compile_per_tenant']:.2f}, apply {growth['apply_per_tenant']:.2f}.
One tenant's edit served in {ratios['edit_served_vs_full_apply']:.3f}x the time of a full apply.

{verdict}

Machine: {results['environment']}
"""


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    n = [r["tenants"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(n, [r["build_s"] for r in rows], "o-", label="load + compile + publish")
    a.plot(n, [r["apply_s"] for r in rows], "s-", label="Envoy apply (ACK)")
    a.plot(n, [r["edit"]["served_s"] for r in rows], "^-", label="one tenant edited: served")
    a.axhline(TARGET_APPLY_S, color="grey", ls="--", lw=1, label=f"target {TARGET_APPLY_S:g} s (all)")
    a.axhline(TARGET_EDIT_S, color="grey", ls=":", lw=1, label=f"target {TARGET_EDIT_S:g} s (edit)")
    a.set(xscale="log", yscale="log", xlabel="tenants", ylabel="seconds", title="Time")
    a.legend(fontsize=8)
    b.plot(n, [r["envoy_alloc_bytes"] / 1e6 for r in rows], "o-", label="Envoy allocated")
    ws = results["with_tenant_stats"]
    b.plot([ws["tenants"]], [ws["envoy_alloc_bytes"] / 1e6], "rx", ms=9, label="with per-tenant cluster stats")
    b.set(xscale="log", yscale="log", xlabel="tenants", ylabel="MB", title="Envoy memory")
    b.legend(fontsize=8)
    fig.suptitle("Fairshare control plane: one Envoy, 2 workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; timings are their median")
    args = parser.parse_args(argv)
    results = asyncio.run(run(sorted(args.tenants), args.repeats))
    md = render(results)
    path = write_results("controlplane", results, md)
    plot(results, results_dir() / "controlplane_scaling.png")
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
