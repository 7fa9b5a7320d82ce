"""Gateway overhead: latency through Envoy against calling the runtime directly, same load, same run.

Target (issue): Envoy adds under 1 ms at p50. Run with `make bench-gateway` or `python -m bench.gateway`.

The platform is the smallest that still has every part: control plane, one runtime replica serving the light
`lexicon` classifier, and the real Envoy with the compiled listener (JWT verification, header stripping,
per-tenant scoped routes, circuit breakers, access log). One replica, so both paths reach the very same
process and the only difference between them is the gateway hop.

Both paths use the same load generator (bench.loadgen) and the same request body. Direct calls carry the
gateway headers Envoy would have set, read from the compiled route of the same config, so the runtime does
the same work either way. Paths alternate within rounds (direct first in odd rounds, Envoy first in even
ones), so drift on a shared machine (CPU frequency, page cache, other load) lands on both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.config.route.v3 import route_pb2

from bench import loadgen
from bench.loadgen import Result, Target, infer_body
from bench.report import environment, latency_stats, markdown_table, results_dir, write_results
from bench.synth import small_config
from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import naming
from xds_server.compiler.compile import CompileInputs, Compiler
from xds_server.envoy.process import find_envoy
from xds_server.local.layout import endpoint_directory
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port
from xds_server.snapshot import ROUTE

NAME = "gateway"
TENANT = "acme"
MODEL = "classifier"
REGION = "us-east-1"
TARGET_P50_OVERHEAD_MS = 1.0
PATHS = ("direct", "envoy")
# A short text with sentiment words: the model's work stays microseconds, so the hop is what we see.
BODY = infer_body(["the support was great but the app is slow"])


@dataclass(frozen=True)
class Level:
    concurrency: int
    requests: int  # per round per path


# Concurrency 1 shows pure added latency; 8 shows the hop under moderate queueing on a 2-core machine.
# Sized for ~10,000 samples per path per level (p99 rests on ~100 tail samples) in well under a minute each.
DEFAULT_LEVELS = (Level(1, 2000), Level(8, 4000))
# Whose CPU time is counted per request: the load generator is this process.
COMPONENTS = ("client", "envoy", "runtime")


@dataclass
class Samples:
    latencies_s: list[float]
    errors: int
    wall_s: float
    measured: int
    cpu_s: dict[str, float]


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (fields 14 and 15; the name in parentheses may hold spaces)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {"client": time.process_time()} | {name: process_cpu_s(pid) for name, pid in pids.items()}


def gateway_headers(platform: LocalPlatform, key: SigningKey) -> dict[str, str]:
    """The x-fairshare-* headers Envoy sets for TENANT's MODEL requests, read from the compiled route,
    so the direct path cannot drift from what the gateway really sends."""
    assert platform.config is not None
    compiled = Compiler().compile(CompileInputs(
        config=platform.config, endpoints=endpoint_directory(platform.replicas), jwks=key.jwks(),
    ))
    packed = compiled.snapshots[REGION].of_type(ROUTE)[naming.tenant_routes(TENANT)].packed
    routes = route_pb2.RouteConfiguration.FromString(packed.value)
    # The tenant header comes from the verified JWT claim, not from the route.
    headers = {contract.TENANT_HEADER: TENANT}
    vhost = routes.virtual_hosts[0]
    options = list(vhost.request_headers_to_add)
    model_route = next(r for r in vhost.routes if r.name == MODEL)
    # One version at 100 %: the weighted cluster's version header is the one every request gets.
    options += model_route.route.weighted_clusters.clusters[0].request_headers_to_add
    for option in options:
        # Envoy drops headers whose value is empty (keep_empty_value is off); so do we.
        if option.header.value:
            headers[option.header.key] = option.header.value
    return headers


def wait_routed(target: Target, timeout_s: float = 30.0) -> None:
    """Envoy is 'ready' before the control plane has pushed routes and endpoints; wait for a real 200."""
    deadline = time.monotonic() + timeout_s
    last: Result | None = None
    while time.monotonic() < deadline:
        last = loadgen.run_sync(target, requests=1, concurrency=1, timeout_s=5)[0]
        if last.ok:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no 200 through Envoy after {timeout_s:.0f}s (last: {last})")


def measure(target: Target, level: Level, pids: dict[str, int]) -> Samples:
    cpu_before = cpu_snapshot(pids)
    start = time.perf_counter()
    results = loadgen.run_sync(target, requests=level.requests, concurrency=level.concurrency, timeout_s=30)
    wall = time.perf_counter() - start
    cpu_after = cpu_snapshot(pids)
    # loadgen opens fresh connections per run: each worker's first request pays a TCP handshake (to the
    # runtime on one path, to Envoy on the other), which is not the per-request cost we measure.
    steady = sorted(results, key=lambda r: r.started_s)[level.concurrency:]
    return Samples(
        latencies_s=[r.latency_s for r in steady if r.ok],
        errors=sum(not r.ok for r in results),
        wall_s=wall,
        measured=len(results),
        cpu_s={k: cpu_after[k] - cpu_before[k] for k in cpu_after},
    )


def run_level(targets: dict[str, Target], level: Level, rounds: int, pids: dict[str, int]) -> dict[str, Any]:
    pooled: dict[str, list[float]] = {p: [] for p in PATHS}
    errors = dict.fromkeys(PATHS, 0)
    wall = dict.fromkeys(PATHS, 0.0)
    sent = dict.fromkeys(PATHS, 0)
    cpu = {p: dict.fromkeys(COMPONENTS, 0.0) for p in PATHS}
    per_round: list[dict[str, Any]] = []
    # Warm both paths (Envoy's upstream pool, the runtime's first-request costs) outside the measurement.
    for path in PATHS:
        measure(targets[path], Level(level.concurrency, max(50, 4 * level.concurrency)), pids)
    for i in range(rounds):
        order = PATHS if i % 2 == 0 else PATHS[::-1]
        row: dict[str, Any] = {"round": i + 1, "order": list(order)}
        for path in order:
            s = measure(targets[path], level, pids)
            pooled[path] += s.latencies_s
            errors[path] += s.errors
            wall[path] += s.wall_s
            sent[path] += s.measured
            for k in COMPONENTS:
                cpu[path][k] += s.cpu_s[k]
            row[path] = latency_stats(s.latencies_s) | {"errors": s.errors, "rps": s.measured / s.wall_s}
        row["overhead_p50_ms"] = row["envoy"]["p50_ms"] - row["direct"]["p50_ms"]
        per_round.append(row)
        print(f"  c={level.concurrency:<2} round {i + 1}/{rounds}  "
              f"direct p50 {row['direct']['p50_ms']:.3f} p99 {row['direct']['p99_ms']:.3f} ms  |  "
              f"envoy p50 {row['envoy']['p50_ms']:.3f} p99 {row['envoy']['p99_ms']:.3f} ms  |  "
              f"+{row['overhead_p50_ms']:.3f} ms at p50", file=sys.stderr, flush=True)
    stats: dict[str, dict[str, Any]] = {
        p: latency_stats(pooled[p]) | {
            "errors": errors[p],
            "rps": sent[p] / wall[p],
            # Where the time goes when the cores are the bottleneck: CPU per request by process, and how
            # busy the whole machine was (1.0 = every core all the time).
            "cpu_us_per_request": {k: cpu[p][k] / sent[p] * 1e6 for k in COMPONENTS},
            "machine_busy": sum(cpu[p].values()) / wall[p] / (os.cpu_count() or 1),
        }
        for p in PATHS
    }
    d, e = stats["direct"], stats["envoy"]
    overhead = {f"{q}_ms": e[f"{q}_ms"] - d[f"{q}_ms"] for q in ("p50", "p90", "p99", "mean")}
    round_overheads = [r["overhead_p50_ms"] for r in per_round]
    return {
        "concurrency": level.concurrency,
        "requests_per_round_per_path": level.requests,
        "rounds": rounds,
        "direct": d,
        "envoy": e,
        "overhead": overhead,
        "ratio": {q: e[f"{q}_ms"] / d[f"{q}_ms"] for q in ("p50", "p99")},
        "overhead_p50_ms_per_round": {"min": min(round_overheads), "max": max(round_overheads)},
        "target_p50_overhead_ms": TARGET_P50_OVERHEAD_MS,
        "target_met": overhead["p50_ms"] < TARGET_P50_OVERHEAD_MS and errors["envoy"] == errors["direct"] == 0,
        "per_round": per_round,
        "_samples_ms": {p: [x * 1000 for x in pooled[p]] for p in PATHS},
    }


def envoy_version() -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True, timeout=10).stdout
        # "envoy  version: <sha>/<semver>/Clean/RELEASE/BoringSSL"
        return out.split("version:")[-1].strip().split("/")[1]
    return "unknown"


def render_markdown(results: dict[str, Any]) -> str:
    rows = []
    for lvl in results["levels"]:
        for path in PATHS:
            s = lvl[path]
            rows.append([lvl["concurrency"], path, s["count"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["mean_ms"],
                         f"{s['rps']:.0f}", s["errors"]])
    latency = markdown_table(
        ["concurrency", "path", "requests", "p50 ms", "p90 ms", "p99 ms", "mean ms", "req/s", "errors"], rows)
    over_rows = []
    for lvl in results["levels"]:
        o, r, spread = lvl["overhead"], lvl["ratio"], lvl["overhead_p50_ms_per_round"]
        over_rows.append([
            lvl["concurrency"], o["p50_ms"], f"{spread['min']:.3f} .. {spread['max']:.3f}", o["p99_ms"],
            f"{r['p50']:.2f}x", f"{r['p99']:.2f}x", f"< {TARGET_P50_OVERHEAD_MS:g} ms",
            "PASS" if lvl["target_met"] else "FAIL",
        ])
    overhead = markdown_table(
        ["concurrency", "overhead p50 ms", "p50 overhead per round", "overhead p99 ms", "ratio p50",
         "ratio p99", "target (p50)", "result"], over_rows)
    cpu_rows = []
    for lvl in results["levels"]:
        for path in PATHS:
            c = lvl[path]["cpu_us_per_request"]
            cpu_rows.append([lvl["concurrency"], path, *(f"{c[k]:.0f}" for k in COMPONENTS),
                             f"{sum(c.values()):.0f}", f"{lvl[path]['machine_busy']:.0%}"])
    cpu = markdown_table(["concurrency", "path", *(f"{k} CPU us/req" for k in COMPONENTS), "total us/req",
                          "machine busy"], cpu_rows)
    env = results["environment"]
    return "\n".join([
        "# Gateway overhead: Envoy vs direct to the runtime",
        "",
        f"Target: Envoy adds under {TARGET_P50_OVERHEAD_MS:g} ms at p50. "
        f"Concurrency 1 is the pure added latency; the verdict is the concurrency-1 row "
        f"({'PASS' if results['target_met'] else 'FAIL'}).",
        "",
        "## Overhead (Envoy - direct)",
        "",
        overhead,
        "",
        "## Reading it",
        "",
        *(f"- {line}" for line in interpret(results)),
        "",
        "## Latency per path (all rounds pooled)",
        "",
        latency,
        "",
        "## CPU per request (from /proc; the client is the Python load generator)",
        "",
        cpu,
        "",
        "## How it was measured",
        "",
        f"- {results['rounds']} rounds per concurrency; in each, the same closed-loop load (bench.loadgen, "
        "aiohttp, keep-alive) goes direct to the runtime and through Envoy, alternating which goes first.",
        f"- One runtime replica serving `{MODEL}` (lexicon, microseconds of model work); tenant `{TENANT}`. "
        "Direct calls carry the gateway headers Envoy would set (read from the compiled route); Envoy calls "
        "carry a real ES256 token that Envoy verifies.",
        "- Each worker's first request per round (TCP handshake) and a warm-up run per path are not counted.",
        f"- Machine: {env['cpus']} CPUs shared by the load generator, Envoy ({results['envoy_version']}, "
        "1 worker thread), the runtime and the control plane, so at concurrency > 1 the three compete for "
        "cores and part of the overhead is CPU contention, not Envoy's own work. "
        f"Python {env['python']}, {env['platform']}.",
        "- Latency is measured by the Python client, so it includes aiohttp's own per-request cost on both "
        "paths; the overhead is the difference.",
        "",
        "Plot: `gateway_latency.png`.",
    ])


def interpret(results: dict[str, Any]) -> list[str]:
    """One sentence per level tying the latency overhead to where the CPU went, from this run's numbers."""
    cpus = results["environment"]["cpus"]
    lines = []
    for lvl in results["levels"]:
        c, d, e = lvl["concurrency"], lvl["direct"], lvl["envoy"]
        envoy_cpu_ms = e["cpu_us_per_request"]["envoy"] / 1000
        if c == 1:
            lines.append(
                f"Concurrency 1: one request at a time, so the added {lvl['overhead']['p50_ms']:.2f} ms at p50 is "
                f"Envoy's own work ({envoy_cpu_ms:.2f} ms of CPU per request) plus one more loopback hop.")
        else:
            lines.append(
                f"Concurrency {c}: the load generator, Envoy and the runtime kept the {cpus} cores "
                f"{e['machine_busy']:.0%} busy. Envoy's {envoy_cpu_ms:.2f} ms of CPU per request comes out of the "
                f"cores the runtime and the client need, so throughput falls from {d['rps']:.0f} to {e['rps']:.0f} "
                f"req/s and, in a closed loop (latency = concurrency / throughput), latency rises with it. "
                "Much of that overhead is contention on this machine; with Envoy on its own cores, as in a "
                "cluster, the concurrency-1 figure is the better guide.")
    return lines


def plot(levels: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI or benchmark hosts
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(levels), figsize=(6.2 * len(levels), 4.4), squeeze=False)
    colors = {"direct": "#1f77b4", "envoy": "#d62728"}
    for ax, lvl in zip(axes[0], levels, strict=True):
        lo, hi = float("inf"), 0.0
        for p in PATHS:
            ms = np.sort(np.asarray(lvl["_samples_ms"][p]))
            y = np.arange(1, ms.size + 1) / ms.size
            s = lvl[p]
            ax.plot(ms, y, color=colors[p], lw=1.8,
                    label=f"{p}: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms")
            for q, style in (("p50", ":"), ("p99", "--")):
                ax.axvline(s[f"{q}_ms"], color=colors[p], ls=style, lw=0.9, alpha=0.7)
            lo, hi = min(lo, float(ms[0])), max(hi, float(ms[-1]))
        o = lvl["overhead"]
        ax.set_title(f"concurrency {lvl['concurrency']}: Envoy adds {o['p50_ms']:+.2f} ms p50, "
                     f"{o['p99_ms']:+.2f} ms p99", fontsize=10)
        # Log scale: the sub-millisecond body and a tail ten times longer both stay readable.
        ax.set_xscale("log")
        ax.set_xlim(lo * 0.9, hi * 1.1)
        ticks = [t for t in (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo * 0.9 <= t <= hi * 1.1]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8.5)
    fig.suptitle("Gateway overhead: direct to runtime vs through Envoy (CDF; dotted p50, dashed p99)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def start_platform(root: Path) -> tuple[LocalPlatform, SigningKey]:
    gateway_port = free_port()
    # Concurrency quota well above the load: the breakers must not queue requests in Envoy.
    cfg = small_config(root, gateway_port, replicas=1, concurrency=64)
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(
        config_dir=cfg, state_dir=state, xds_port=free_port(), status_port=free_port(), startup_timeout=60,
    ))
    platform.start()
    return platform, SigningKey.load_or_create(state)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply requests per round (0.2 = quick look)")
    args = parser.parse_args(argv)
    levels = [Level(lv.concurrency, max(20, int(lv.requests * args.scale))) for lv in DEFAULT_LEVELS]

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fairshare-bench-gateway-") as tmp:
        print("starting platform (control plane, 1 runtime replica, Envoy)...", file=sys.stderr, flush=True)
        platform, key = start_platform(Path(tmp))
        try:
            assert platform.config is not None
            replica = platform.replicas[0]
            infer = f"/v2/models/{MODEL}/infer"
            token = issue_token(key, platform.config.platform.auth, TENANT)
            targets = {
                "direct": Target(f"http://{platform.opts.host}:{replica.port}{infer}", body=BODY,
                                 headers=tuple(gateway_headers(platform, key).items())),
                "envoy": Target(platform.gateway_url(REGION) + infer, token=token, body=BODY),
            }
            wait_routed(targets["envoy"])
            print(f"platform up in {time.perf_counter() - began:.1f}s; direct headers: "
                  f"{dict(targets['direct'].headers)}", file=sys.stderr, flush=True)
            envoy_pid = platform.envoys[REGION].pid
            runtime_proc = platform.supervisor.children[replica.name].proc
            assert envoy_pid is not None and runtime_proc is not None
            pids = {"envoy": envoy_pid, "runtime": runtime_proc.pid}
            measured = [run_level(targets, lvl, args.rounds, pids) for lvl in levels]
        finally:
            platform.stop()

    results: dict[str, Any] = {
        "benchmark": NAME,
        "target": f"Envoy adds under {TARGET_P50_OVERHEAD_MS:g} ms at p50 (concurrency 1)",
        "target_met": measured[0]["target_met"],
        "rounds": args.rounds,
        "envoy_version": envoy_version(),
        "environment": environment(),
        "duration_s": round(time.perf_counter() - began, 1),
        "levels": measured,
    }
    plot_path = results_dir() / "gateway_latency.png"
    plot(measured, plot_path)
    for lvl in measured:
        lvl.pop("_samples_ms")  # raw samples feed the plot; the JSON keeps the statistics
    json_path = write_results(NAME, results, render_markdown(results))
    for lvl in measured:
        o = lvl["overhead"]
        print(f"c={lvl['concurrency']}: direct p50 {lvl['direct']['p50_ms']:.3f} ms, envoy p50 "
              f"{lvl['envoy']['p50_ms']:.3f} ms -> overhead p50 {o['p50_ms']:+.3f} ms, p99 {o['p99_ms']:+.3f} ms "
              f"({'PASS' if lvl['target_met'] else 'FAIL'} < {TARGET_P50_OVERHEAD_MS:g} ms)")
    print(f"wrote {json_path}, {json_path.with_suffix('.md')}, {plot_path} in {results['duration_s']}s")
    # A missed target is a result, not a crash: `make bench` goes on to the other benchmarks.
    return 0


if __name__ == "__main__":
    sys.exit(main())
