"""Rate-limit benchmark: does the gateway hold a tenant to its limit, and what does the check cost?

Run with `make bench-ratelimit` or `python -m bench.ratelimit` (about 2 minutes). In one run:

1. Admitted rate against the configured limit at 1.5x, 3x and 10x offered load (open loop, 10 s each)
   through 2 Envoy gateways sharing one port and a real Redis. Target: within +-5%. Baseline: an exempt
   tenant (no limit) at 3x, which is admitted at its offered rate.
2. Decision latency of the rate-limit service over gRPC, Redis and in-memory backends (p50, p99), against
   a call the service answers without touching a counter (the gRPC round trip alone).
3. The latency a request pays for the global check: a limited tenant (never over its limit) against an
   exempt tenant's identical route, through the same Envoy, interleaved rounds, one request at a time,
   and how long Envoy itself waits on the service. Target: under 1 ms at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.loadgen import Target, infer_body
from bench.report import environment, latency_stats, markdown_table, results_dir, write_results
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port
from xds_server.ratelimit.local_redis import RedisServer

NAME = "ratelimit"
REGION = "us-east-1"
LIMIT_RPS = 20.0
LOADS = (1.5, 3.0, 10.0)
LOAD_SECONDS = 10.0
TARGET_ACCURACY = 0.05
TARGET_P50_ADDED_MS = 1.0

# Response headers a rate-limit check reads back.
_KEEP = ("retry-after", "ratelimit", "ratelimit-policy", "x-fairshare-cost-tokens")


# -- open-loop load (also used by tests/ratelimit) --------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    started_s: float  # since the run began
    status: int
    headers: dict[str, str]


async def offer(target: Target, rate: float, duration_s: float, *, new_connections: bool = False,
                catch_up: bool = True, max_in_flight: int = 64, timeout_s: float = 30) -> list[Answer]:
    """Offer `rate` requests a second for `duration_s`, open loop: request i starts at i / rate whatever
    the answers, as clients over their limit do (a closed loop slows down when refused). `new_connections`:
    one connection per request, so gateways sharing a port (SO_REUSEPORT) each get a share. `catch_up`
    False: a well-behaved client, never two requests closer than 1 / rate, even after this process stalls."""
    answers: list[Answer] = []
    gate = asyncio.Semaphore(max_in_flight)
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=new_connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        t0 = time.perf_counter()

        async def send() -> None:
            async with gate:
                started = time.perf_counter() - t0
                try:
                    async with session.post(target.url, data=target.body, headers=target.all_headers()) as resp:
                        await resp.read()
                        kept = {k: resp.headers[k] for k in _KEEP if k in resp.headers}
                        answers.append(Answer(started, resp.status, kept))
                except (TimeoutError, aiohttp.ClientError):
                    answers.append(Answer(started, 0, {}))

        tasks = []
        next_at = t0
        for _ in range(int(rate * duration_s)):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send()))
            next_at = (next_at if catch_up else time.perf_counter()) + 1 / rate
        await asyncio.gather(*tasks)
    return sorted(answers, key=lambda a: a.started_s)


def offer_sync(target: Target, rate: float, duration_s: float, *, new_connections: bool = False,
               catch_up: bool = True) -> list[Answer]:
    return asyncio.run(offer(target, rate, duration_s, new_connections=new_connections, catch_up=catch_up))


# -- config ----------------------------------------------------------------------------------------------

def write_config(root: Path, gateway_port: int, tenants: dict[str, dict[str, Any]], *,
                 burst_fraction: float = 0.2, token_estimate: int = 16) -> Path:
    """One region, one pool, the light model; tiers `open` and `closed` named for their failure mode;
    `tenants` maps each tenant to the fields it adds to its spec (tier defaults to `open`)."""
    cfg = root / "config"
    (cfg / "tenants").mkdir(parents=True)
    quotas = {"concurrency": 64, "requests_per_second": 10, "tokens_per_minute": 1_000_000, "gpus": 0}
    tiers = {name: {"weight": 1, "quotas": quotas, "rate_limit": {"failure_mode": name}} for name in ("open", "closed")}
    (cfg / "tiers.yaml").write_text(yaml.safe_dump({"tiers": tiers}))
    (cfg / "platform.yaml").write_text(yaml.safe_dump({"ratelimit": {
        "enabled": True, "timeout_ms": 200, "burst_fraction": burst_fraction, "token_estimate": token_estimate}}))
    (cfg / "regions.yaml").write_text(yaml.safe_dump({"regions": [
        {"id": REGION, "gateway_port": gateway_port, "pools": [{"name": "cpu", "replicas": 1}]}]}))
    (cfg / "models.yaml").write_text(yaml.safe_dump({"models": {"classifier": {
        "kind": "classifier", "versions": {"v1": {"pool": "cpu", "loader": "lexicon"}}}}}))
    for tenant, extra in tenants.items():
        spec = {"id": tenant, "tier": "open", "regions": {"home": REGION, "allowed": [REGION]},
                "models": {"classifier": {"split": {"v1": 100}}}, **extra}
        (cfg / "tenants" / f"{tenant}.yaml").write_text(yaml.safe_dump(spec))
    return cfg


def _quota(rps: float, tpm: int = 100_000_000) -> dict[str, Any]:
    return {"quotas": {"requests_per_second": rps, "tokens_per_minute": tpm}}


BENCH_TENANTS: dict[str, dict[str, Any]] = {
    **{f"load-{str(x).replace('.', '-')}x": _quota(LIMIT_RPS) for x in LOADS},
    "nolimit": {"rate_limit": {"exempt": True}},
    "checked": _quota(1_000_000),  # checked on every request, never over
}


# -- 1. admitted rate ------------------------------------------------------------------------------------

def admitted_rates(platform: LocalPlatform, key: SigningKey) -> list[dict[str, Any]]:
    url = platform.gateway_url(REGION) + "/v2/models/classifier/infer"
    assert platform.config is not None
    rows = []
    for x in LOADS:
        tenant = f"load-{str(x).replace('.', '-')}x"
        target = Target(url, issue_token(key, platform.config.platform.auth, tenant), infer_body(["bench"]))
        print(f"  {tenant}: offering {LIMIT_RPS * x:.0f}/s for {LOAD_SECONDS:.0f} s (limit {LIMIT_RPS:.0f}/s)...",
              flush=True)
        rows.append(_rate_row(tenant, x, LIMIT_RPS, offer_sync(target, LIMIT_RPS * x, LOAD_SECONDS)))
    target = Target(url, issue_token(key, platform.config.platform.auth, "nolimit"), infer_body(["bench"]))
    print("  baseline: exempt tenant at 3x for 5 s...", flush=True)
    rows.append(_rate_row("nolimit (baseline)", 3.0, LIMIT_RPS, offer_sync(target, LIMIT_RPS * 3, 5.0)))
    return rows


def _rate_row(tenant: str, load: float, limit: float, answers: list[Answer]) -> dict[str, Any]:
    span = answers[-1].started_s - answers[0].started_s + 1 / (limit * load)
    ok = sum(a.status == 200 for a in answers)
    other = sum(a.status not in (200, 429) for a in answers)
    rate = ok / span
    return {"tenant": tenant, "load": load, "offered_rps": len(answers) / span, "admitted_rps": rate,
            "limit_rps": limit, "ratio": rate / limit, "refused_429": sum(a.status == 429 for a in answers),
            "errors": other, "seconds": span}


# -- 2. decision latency ---------------------------------------------------------------------------------

def decision_latency(cfg: Path, redis_url: str, calls: int = 3000) -> dict[str, Any]:
    """Each backend in its own service process (as in the control plane), called over gRPC one at a time."""
    out: dict[str, Any] = {}
    for backend in ("memory", "redis"):
        port = free_port()
        argv = [sys.executable, "-m", "bench.ratelimit", "serve", "--config", str(cfg), "--port", str(port)]
        if backend == "redis":
            argv += ["--redis-url", redis_url]
        proc = subprocess.Popen(argv)
        try:
            print(f"  {backend}: {calls} decisions, and {calls} answered without a counter...", flush=True)
            out[backend] = asyncio.run(_time_decisions(port, calls))
        finally:
            proc.terminate()
            proc.wait(10)
    return out


async def _time_decisions(port: int, calls: int) -> dict[str, Any]:
    import grpc
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as desc_pb2
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    def request(tenant: str) -> rls_pb2.RateLimitRequest:
        base = [("region", REGION), ("tenant", tenant), ("tier", "open"), ("model", "classifier")]
        descriptors = [desc_pb2.RateLimitDescriptor(entries=[desc_pb2.RateLimitDescriptor.Entry(key=k, value=v)
                                                             for k, v in [*base, ("limit", kind)]])
                       for kind in ("requests", "tokens")]
        return rls_pb2.RateLimitRequest(domain="fairshare", descriptors=descriptors)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        for _ in range(100):  # connect and warm up
            try:
                await stub.ShouldRateLimit(request("checked"), timeout=2)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        samples: dict[str, list[float]] = {"decision": [], "no_counter": []}
        for i in range(calls * 2):
            kind = "decision" if i % 2 == 0 else "no_counter"  # interleaved: drift hits both alike
            req = request("checked" if kind == "decision" else "unknown-tenant")
            start = time.perf_counter()
            await stub.ShouldRateLimit(req, timeout=2)
            samples[kind].append(time.perf_counter() - start)
    return {kind: latency_stats(s) for kind, s in samples.items()}


def serve(cfg: Path, port: int, redis_url: str | None) -> None:
    """A rate-limit service alone, with the limits compiled from `cfg` (the benchmark's decision timing)."""
    from xds_server.compiler import ratelimits
    from xds_server.config import load_config
    from xds_server.config.model import RateLimitBackend
    from xds_server.ratelimit.server import RateLimitServer

    config = load_config(cfg)
    settings = config.platform.ratelimit.model_copy(update={"port": port, "host": "127.0.0.1"})
    if redis_url:
        settings = settings.model_copy(update={"backend": RateLimitBackend.REDIS, "redis_url": redis_url})

    async def run() -> None:
        server = RateLimitServer(settings)
        server.publish(ratelimits.limit_table(config))
        await server.start()
        await asyncio.Event().wait()

    asyncio.run(run())


# -- 3. latency added at the gateway ---------------------------------------------------------------------

def added_latency(platform: LocalPlatform, key: SigningKey, rounds: int = 6, per_round: int = 300) -> dict[str, Any]:
    """Interleaved rounds, one request at a time, of the same request on two routes that differ only in
    the global check. Also: how long Envoy itself waited on the service (its cluster's upstream_rq_time)."""
    url = platform.gateway_url(REGION) + "/v2/models/classifier/infer"
    assert platform.config is not None
    auth = platform.config.platform.auth
    targets = {name: Target(url, issue_token(key, auth, tenant), infer_body(["the support was great"]))
               for name, tenant in (("no limit", "nolimit"), ("global check", "checked"))}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for r in range(rounds):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        for name in order:
            samples[name].extend(asyncio.run(_sequential(targets[name], per_round))[10:])
        print(f"  round {r + 1}/{rounds} done", flush=True)
    out: dict[str, Any] = {name: latency_stats(s) for name, s in samples.items()}
    out["envoy_rls_rq_time"] = {name: _rls_rq_time(envoy.admin_get(
        "/stats?filter=^cluster\\.fairshare/ratelimit\\.upstream_rq_time$")) for name, envoy in platform.envoys.items()}
    return out


def _rls_rq_time(stat: str) -> dict[str, str]:
    """P50 and P99 (cumulative, whole milliseconds as Envoy records them) from an admin histogram line."""
    found = {q: cumulative for q, _interval, cumulative in re.findall(r"P(50|99)\(([^,]+),([^)]+)\)", stat)}
    return {f"p{q}_ms": f"{float(found[q]):.2f}" if q in found else "n/a" for q in ("50", "99")}


async def _sequential(target: Target, n: int) -> list[float]:
    """One request at a time on one connection; the first few set the connection up (callers drop them)."""
    latencies = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(n):
            start = time.perf_counter()
            async with session.post(target.url, data=target.body, headers=target.all_headers()) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{target.url}: status {resp.status} in a latency run")
            latencies.append(time.perf_counter() - start)
    return latencies


# -- report ----------------------------------------------------------------------------------------------

def plot(rates: list[dict[str, Any]], decisions: dict[str, Any], added: dict[str, Any],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    limited = [r for r in rates if "baseline" not in r["tenant"]]
    xs = [f"{r['load']:g}x offered\n({r['offered_rps']:.0f}/s)" for r in limited]
    ax1.axhspan(1 - TARGET_ACCURACY, 1 + TARGET_ACCURACY, color="#2ca02c", alpha=0.25, label="target: limit +-5%")
    ax1.bar(xs, [r["ratio"] for r in limited], color="#3b7dd8", width=0.5, label="admitted / limit")
    for x, r in zip(xs, limited, strict=True):
        ax1.annotate(f"{r['ratio']:.3f}", (x, r["ratio"]), ha="center", va="bottom")
    ax1.set_ylim(0.8, 1.2)
    ax1.set_ylabel(f"admitted rate / limit ({LIMIT_RPS:.0f}/s)")
    ax1.set_title("one tenant through 2 gateways + Redis, 10 s each")
    ax1.legend(loc="lower right")
    labels, p50, p99 = [], [], []
    for backend, stats in decisions.items():
        for kind in ("decision", "no_counter"):
            labels.append(f"{backend}\n{kind.replace('_', ' ')}")
            p50.append(stats[kind]["p50_ms"])
            p99.append(stats[kind]["p99_ms"])
    for name in ("no limit", "global check"):
        labels.append(f"request\n{name}")
        p50.append(added[name]["p50_ms"])
        p99.append(added[name]["p99_ms"])
    pos = range(len(labels))
    ax2.bar([p - 0.2 for p in pos], p50, width=0.4, label="p50")
    ax2.bar([p + 0.2 for p in pos], p99, width=0.4, label="p99")
    ax2.set_xticks(list(pos), labels, fontsize=6)
    ax2.set_ylabel("ms")
    ax2.set_title("decision latency and request latency")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def added_deltas(added: dict[str, Any]) -> dict[str, float]:
    return {p: added["global check"][f"{p}_ms"] - added["no limit"][f"{p}_ms"] for p in ("p50", "p99")}


def markdown(rates: list[dict[str, Any]], decisions: dict[str, Any], added: dict[str, Any]) -> str:
    rate_rows = [[r["tenant"], f"{r['load']:g}x", f"{r['offered_rps']:.1f}", f"{r['admitted_rps']:.2f}",
                  f"{r['limit_rps']:.0f}", f"{r['ratio']:.3f}", r["refused_429"], r["errors"]] for r in rates]
    dec_rows = [[b, k.replace("_", " "), s[k]["p50_ms"], s[k]["p99_ms"], s[k]["count"]]
                for b, s in decisions.items() for k in ("decision", "no_counter")]
    add_rows = [[n, added[n]["p50_ms"], added[n]["p99_ms"], added[n]["count"]] for n in ("no limit", "global check")]
    d = added_deltas(added)
    rls = ", ".join(f"{gw}: p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms" for gw, t in added["envoy_rls_rq_time"].items())
    return "\n\n".join([
        "# Rate limits",
        f"Admitted rate against the limit ({LIMIT_RPS:.0f}/s; target within +-{TARGET_ACCURACY:.0%}), "
        "2 Envoy gateways sharing one port, Redis:",
        markdown_table(["tenant", "load", "offered/s", "admitted/s", "limit/s", "admitted/limit", "429", "errors"],
                       rate_rows),
        "Rate-limit service decision latency over gRPC (ms), one call at a time; `no counter` is a call the "
        "service answers without touching a counter (the gRPC round trip alone, the baseline):",
        markdown_table(["backend", "call", "p50", "p99", "calls"], dec_rows),
        f"Request latency through Envoy, one request at a time (ms): the global check adds {d['p50']:+.3f} ms at "
        f"p50 and {d['p99']:+.3f} ms at p99 (target: under {TARGET_P50_ADDED_MS:g} ms at p50). Envoy's own wait on "
        f"the service (its calls, checks and settlements; whole ms): {rls}.",
        markdown_table(["route", "p50", "p99", "requests"], add_rows),
        "![rate limits](ratelimit.png)",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="(internal) run one rate-limit service for the decision timing")
    s.add_argument("--config", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--redis-url", default=None)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(Path(args.config), args.port, args.redis_url)
        return 0

    root = Path(tempfile.mkdtemp(prefix="fairshare-bench-ratelimit-"))
    redis = RedisServer(root / "redis").start()
    cfg = write_config(root, free_port(), BENCH_TENANTS)
    platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=root / "state", xds_port=free_port(),
                                             status_port=free_port(), gateways_per_region=2,
                                             ratelimit_redis_url=redis.url))
    try:
        print("starting control plane, runtime, 2 Envoy gateways and Redis...", flush=True)
        platform.start()
        key = SigningKey.load_or_create(root / "state")
        print("1/3 admitted rate against the limit", flush=True)
        rates = admitted_rates(platform, key)
        print("2/3 decision latency of the service", flush=True)
        decisions = decision_latency(cfg, redis.url)
        print("3/3 latency added by the global check at the gateway", flush=True)
        added = added_latency(platform, key)
    finally:
        platform.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    results = {"environment": environment(), "limit_rps": LIMIT_RPS, "admitted": rates,
               "decision_latency": decisions, "gateway_latency": added,
               "added_ms": added_deltas(added)}
    plot(rates, decisions, added, results_dir() / "ratelimit.png")
    path = write_results(NAME, results, markdown(rates, decisions, added))
    print(markdown(rates, decisions, added))
    print(f"\nwrote {path} and {results_dir() / 'ratelimit.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
