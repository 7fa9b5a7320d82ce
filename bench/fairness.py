"""`make bench-fairness`: does a flooding tenant hurt the others, FIFO vs weighted fair queuing?

Three tenants, weights 1:1:2, share ONE runtime replica behind the real Envoy. The replica's model holds
the worker for a fixed time per request (a simulated accelerator; see docs/fairness.md for why), so the
pool's capacity is known: 1000 / service_ms requests a second. In one run:

1. isolated baselines: each tenant alone at its offered load (A: 10x its share; B and C: within their
   share, by default half of it, ``--light``), then B and C together without A;
2. contention: all three at once, under WFQ and then under FIFO (the replica restarted with the flag);
3. saturation: all three backlogged (closed loop at their concurrency quota), under WFQ and FIFO,
   where the worker's time should split 1:1:2.

Load comes open-loop (Poisson arrivals), each tenant from its own process.

Writes bench/results/fairness.{json,md} and fairness.png (latency over time, service share over time).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fairness_analysis as fa
from bench import loadgen, openloop
from bench.fairness_setup import TENANTS, FairnessPlatform, fairness_platform, share
from bench.report import environment, markdown_table, results_dir, write_results
from inference_images.runtime.scheduling import DEFAULT_IDLE_CREDIT_S

WARMUP_S = 1.0
SCRAPE_S = 0.2


@dataclass
class Phase:
    name: str
    policy: str
    duration_s: float
    samples: list[openloop.Sample]
    scrapes: list[fa.Scrape]


def _progress(message: str) -> None:
    print(message, flush=True)


async def _measure(fp: FairnessPlatform, duration_s: float, streams: Sequence[openloop.Stream] = (),
                   closed: Sequence[str] = (), concurrency: int = 16) -> tuple[list[openloop.Sample], list[fa.Scrape]]:
    """Offer the open-loop ``streams`` and keep the ``closed`` tenants backlogged, scraping the replica."""
    stop = asyncio.Event()
    t0 = time.perf_counter()
    scraper = asyncio.ensure_future(fa.scrape_until(fp.replica_metrics_url, stop, SCRAPE_S, t0))

    async def closed_loop(tenant: str) -> list[openloop.Sample]:
        target = loadgen.Target(fp.url, fp.tokens[tenant])
        results = await loadgen.run(target, duration_s=duration_s, concurrency=concurrency)
        return [openloop.Sample(tenant, r.status, r.started_s, r.latency_s) for r in results]

    opened = openloop.run_apart(list(streams), duration_s) if streams else asyncio.sleep(0, [])
    parts = await asyncio.gather(opened, *(closed_loop(t) for t in closed))
    stop.set()
    scrapes = await scraper
    return [s for part in parts for s in part], scrapes


def _run_phase(fp: FairnessPlatform, name: str, policy: str, duration_s: float, step: str,
               streams: Sequence[openloop.Stream] = (), closed: Sequence[str] = ()) -> Phase:
    _progress(f"{step} {name} ({policy}), {duration_s:.0f} s ...")
    samples, scrapes = asyncio.run(_measure(fp, duration_s, streams, closed))
    return Phase(name, policy, duration_s, samples, scrapes)


def _streams(fp: FairnessPlatform, rates: dict[str, float], only: Sequence[str] | None = None) -> list[openloop.Stream]:
    return [openloop.Stream(t, loadgen.Target(fp.url, fp.tokens[t]), rates[t])
            for t in rates if only is None or t in only]


def run(args: argparse.Namespace) -> dict[str, Any]:
    capacity = 1000.0 / args.service_ms
    rates = {t.id: capacity * share(t) * (args.flood if i == 0 else args.light) for i, t in enumerate(TENANTS)}
    weights = {t.id: t.weight for t in TENANTS}
    heavy, light = TENANTS[0].id, [t.id for t in TENANTS[1:]]
    phases: list[Phase] = []
    steps = iter(f"[{i}/9]" for i in range(1, 10))
    with tempfile.TemporaryDirectory(prefix="fairshare-fairness-") as tmp:
        _progress(f"[0/9] starting the platform (1 replica, {args.service_ms:g} ms per request, "
                  f"capacity {capacity:.0f} req/s) ...")
        with fairness_platform(Path(tmp), service_ms=args.service_ms, concurrency=args.concurrency,
                               scheduler="wfq") as fp:
            extra = tuple(arg for spec in args.batch for arg in ("--batch", spec))
            if args.idle_credit_ms is not None:
                extra += ("--idle-credit-ms", f"{args.idle_credit_ms:g}")
            fp.use_scheduler("wfq", extra)
            for tenant in (*light, heavy):
                phases.append(_run_phase(fp, f"alone:{tenant}", "wfq", args.duration, next(steps),
                                         _streams(fp, rates, [tenant])))
            # The well-behaved tenants together, without the flood: what they cost each other.
            phases.append(_run_phase(fp, "no-flood", "wfq", args.duration, next(steps), _streams(fp, rates, light)))
            for policy in ("wfq", "fifo"):
                if policy == "fifo":
                    _progress(f"{next(steps)} restarting the replica with --scheduler fifo ...")
                    fp.use_scheduler("fifo", extra)
                phases.append(_run_phase(fp, "contention", policy, args.duration, next(steps), _streams(fp, rates)))
                phases.append(_run_phase(fp, "saturation", policy, args.saturate_duration, next(steps),
                                         closed=list(weights)))
    return _summarise(args, rates, weights, phases)


def _summarise(args: argparse.Namespace, rates: dict[str, float], weights: dict[str, float],
               phases: list[Phase]) -> dict[str, Any]:
    by = {(p.name, p.policy): p for p in phases}
    out: dict[str, Any] = {
        "environment": environment(),
        "setup": {
            "replicas": 1, "service_ms": args.service_ms, "capacity_rps": 1000.0 / args.service_ms,
            "weights": weights, "offered_rps": rates, "concurrency_quota": args.concurrency,
            "duration_s": args.duration, "saturate_duration_s": args.saturate_duration, "warmup_s": WARMUP_S,
            "batch": list(args.batch),
            "idle_credit_ms": args.idle_credit_ms if args.idle_credit_ms is not None else DEFAULT_IDLE_CREDIT_S * 1000,
        },
        "alone": {}, "contention": {}, "saturation": {},
    }
    for tenant in weights:
        p = by[(f"alone:{tenant}", "wfq")]
        out["alone"][tenant] = fa.tenant_stats(p.samples, tenant, p.duration_s, WARMUP_S)
    p = by[("no-flood", "wfq")]
    out["no_flood"] = {t: fa.tenant_stats(p.samples, t, p.duration_s, WARMUP_S) for t in list(weights)[1:]}
    for policy in ("wfq", "fifo"):
        p = by[("contention", policy)]
        per: dict[str, Any] = {}
        for tenant in weights:
            stats = fa.tenant_stats(p.samples, tenant, p.duration_s, WARMUP_S)
            alone = out["alone"][tenant]
            for q in ("p50", "p99"):
                base = alone["latency"].get(f"{q}_ms")
                now = stats["latency"].get(f"{q}_ms")
                stats[f"{q}_vs_alone"] = now / base if base and now else None
            stats["throughput_vs_alone"] = (stats["throughput_rps"] / alone["throughput_rps"]
                                            if alone["throughput_rps"] else None)
            if tenant in out["no_flood"]:
                base = out["no_flood"][tenant]["latency"].get("p99_ms")
                now = stats["latency"].get("p99_ms")
                stats["p99_vs_no_flood"] = now / base if base and now else None
            per[tenant] = stats
        per["fairness"] = fa.fairness(fa.intervals(p.scrapes, list(weights)), weights)
        out["contention"][policy] = per
        s = by[("saturation", policy)]
        sat = {t: fa.tenant_stats(s.samples, t, s.duration_s, WARMUP_S) for t in weights}
        sat["fairness"] = fa.fairness(fa.intervals(s.scrapes, list(weights)), weights)
        out["saturation"][policy] = sat
    light = [t for t in weights if t != next(iter(weights))]
    wfq = out["contention"]["wfq"]
    out["targets"] = {
        "light_p99_within_1.5x_alone_wfq": all((wfq[t]["p99_vs_alone"] or 99) <= 1.5 for t in light),
        "light_p99_within_1.5x_no_flood_wfq": all((wfq[t].get("p99_vs_no_flood") or 99) <= 1.5 for t in light),
        "jain_at_least_0.98_wfq": (out["saturation"]["wfq"]["fairness"]["jain_index"] or 0) >= 0.98,
    }
    plot = _plot(phases, weights)
    if plot:
        out["plot"] = plot
    return out


def _markdown(r: dict[str, Any]) -> str:
    setup = r["setup"]
    lines = [
        "# Fairness: one replica, three tenants (weights 1:1:2), through Envoy", "",
        f"Simulated device: {setup['service_ms']:g} ms per request, capacity {setup['capacity_rps']:.0f} req/s; "
        f"offered load (req/s): " + ", ".join(f"{t} {v:.1f}" for t, v in setup["offered_rps"].items())
        + f"; every tenant's concurrency quota {setup['concurrency_quota']}; {setup['duration_s']:g} s per phase, "
        f"first {setup['warmup_s']:g} s not counted."
        + (f" Batching: {', '.join(setup['batch'])}." if setup["batch"] else " No batching.")
        + f" WFQ idle credit {setup['idle_credit_ms']:g} ms.", "",
        "## Latency under contention vs each tenant alone (answered requests)", "",
    ]
    rows = []
    for tenant, alone in r["alone"].items():
        for policy in ("wfq", "fifo"):
            c = r["contention"][policy][tenant]
            rows.append([tenant, policy, alone["latency"].get("p50_ms", 0.0), alone["latency"].get("p99_ms", 0.0),
                         c["latency"].get("p50_ms", 0.0), c["latency"].get("p99_ms", 0.0),
                         f"{c['p99_vs_alone']:.2f}x" if c["p99_vs_alone"] else "-",
                         f"{c['p99_vs_no_flood']:.2f}x" if c.get("p99_vs_no_flood") else "-",
                         f"{alone['throughput_rps']:.1f}", f"{c['throughput_rps']:.1f}",
                         ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()))])
    lines.append(markdown_table(
        ["tenant", "scheduler", "alone p50 ms", "alone p99 ms", "p50 ms", "p99 ms", "p99 vs alone",
         "p99 vs B+C without A", "alone req/s", "req/s", "answers"], rows))
    lines += ["", "Without the flood (B and C together, WFQ): " + ", ".join(
        f"{t} p50 {v['latency'].get('p50_ms', 0.0):.1f} ms, p99 {v['latency'].get('p99_ms', 0.0):.1f} ms"
        for t, v in r["no_flood"].items()) + "."]
    lines += ["", "## Sharing the worker when every tenant is backlogged", ""]
    rows = []
    for phase in ("saturation", "contention"):
        for policy in ("wfq", "fifo"):
            f = r[phase][policy]["fairness"]
            rows.append([phase, policy,
                         ", ".join(f"{t} {v:.2f}" for t, v in f["service_share"].items()),
                         f"{f['jain_index']:.3f}" if f["jain_index"] is not None else "n/a (never all backlogged)",
                         f"{f['max_gap_s'] * 1000:.0f}", f"{f['all_backlogged_s']:.1f}"])
    lines.append(markdown_table(
        ["phase", "scheduler", "service share (target 0.25, 0.25, 0.50)", "Jain's index (weight-normalised)",
         "max gap between two backlogged tenants (ms of weight-normalised service)", "s all backlogged"], rows))
    lines += ["", "## Targets", ""]
    lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in r["targets"].items()]
    if "plot" in r:
        lines += ["", f"![latency and service share over time]({Path(r['plot']).name})"]
    return "\n".join(lines)


def _plot(phases: list[Phase], weights: dict[str, float]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    colours = dict(zip(weights, ("tab:red", "tab:blue", "tab:green"), strict=False))
    by = {(p.name, p.policy): p for p in phases}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    for col, policy in enumerate(("fifo", "wfq")):
        ax = axes[0][col]
        p = by[("contention", policy)]
        for tenant in weights:
            pts = [(s.started_s, s.latency_s * 1000) for s in p.samples if s.tenant == tenant and s.ok]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=4, color=colours[tenant], label=tenant, alpha=0.6)
        ax.set_yscale("log")
        ax.set_title(f"contention, {policy}: latency of answered requests")
        ax.set_ylabel("ms (log)")
        ax.legend(loc="upper right", markerscale=3)
        ax = axes[1][col]
        s = by[("saturation", policy)]
        spans = fa.intervals(s.scrapes, list(weights))
        xs = [span.end_s for span in spans]
        totals = [sum(span.service.values()) or 1.0 for span in spans]
        ys = [[span.service[t] / tot for span, tot in zip(spans, totals, strict=True)] for t in weights]
        ax.stackplot(xs, ys, labels=list(weights), colors=[colours[t] for t in weights], alpha=0.7)
        ax.axhline(0.25, color="black", ls="--", lw=0.8)
        ax.axhline(0.5, color="black", ls="--", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_title(f"saturation, {policy}: share of worker time (target 1:1:2)")
        ax.set_xlabel("seconds into the phase")
        ax.legend(loc="upper right")
    fig.tight_layout()
    path = results_dir() / "fairness.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__.splitlines()[0])
    parser.add_argument("--service-ms", type=float, default=20.0, help="device time per request (default 20)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per load phase (default 20)")
    parser.add_argument("--saturate-duration", type=float, default=8.0, help="seconds per saturation phase")
    parser.add_argument("--flood", type=float, default=10.0, help="tenant A's offered load, in multiples of its share")
    parser.add_argument("--light", type=float, default=0.5,
                        help="B's and C's offered load, as a fraction of their share")
    parser.add_argument("--concurrency", type=int, default=16, help="every tenant's concurrency quota")
    parser.add_argument("--idle-credit-ms", type=float, default=None,
                        help="wfq's idle credit (default: the runtime's default)")
    parser.add_argument("--batch", action="append", default=[], metavar="MODEL:SIZE[:WAIT_MS]",
                        help="runtime batching (default: none)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args)
    results["wall_s"] = time.perf_counter() - start
    markdown = _markdown(results)
    path = write_results("fairness", results, markdown)
    print(markdown)
    print(f"\nwrote {path} in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
