"""Rate-limit benchmark: does the gateway hold a tenant to its limit, and what does the check cost?

Run with `make bench-ratelimit` or `python -m bench.ratelimit` (about 5 minutes). In one run:

1. Admitted rate against the configured limit, for request limits of 1, 5, 50 and 500 per second and a
   token limit (tokens_per_minute), each at 2x, 3x and 10x offered load (open loop), through one gateway
   with the in-memory counters (`make run`'s shape) and through 2 Envoy gateways sharing one port and a
   real Redis. Target: within +-5%. The rate is counted after a warm-up that spends the tenant's burst
   (GCRA admits its burst once, then exactly the rate), over a window long enough that one request
   either way is under 5% at 1/s. Low limits and the token cells run at once, as separate tenants; the
   offered rate actually reached is reported beside each cell (this machine cannot offer 5,000/s).
   Baseline: an exempt tenant (no limit) at 3x, which is admitted at its offered rate.
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.loadgen import Target, infer_body
from bench.report import environment, latency_stats, markdown_table, progress, results_dir, write_results
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port
from xds_server.ratelimit.local_redis import RedisServer

NAME = "ratelimit"
REGION = "us-east-1"
LIMITS = (1.0, 5.0, 50.0, 500.0)  # requests per second
LOADS = (2.0, 3.0, 10.0)  # offered / limit
BASELINE_RPS = 20.0  # the exempt tenant's notional limit (offered 3x)
TOKENS_PER_MINUTE = 6000  # the token cells' limit: 100 tokens a second
TOKEN_ESTIMATE = 16  # reserved per request (write_config's default), settled with the real cost
TOKEN_COSTS = (10, 40)  # tokens per request: below the reservation (refunded), above it (charged after)
BURST_FRACTION = 0.2
TARGET_ACCURACY = 0.05
TARGET_P50_ADDED_MS = 1.0
TOPOLOGIES = ("1 gateway, memory", "2 gateways, Redis")

# Response headers a rate-limit check reads back.
_KEEP = ("retry-after", "ratelimit", "ratelimit-policy", "x-fairshare-cost-tokens")


# -- open-loop load (also used by tests/ratelimit) --------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    started_s: float  # since the run began
    status: int
    headers: dict[str, str]


async def offer(target: Target, rate: float, duration_s: float, *, new_connections: bool = False,
                catch_up: bool = True, max_in_flight: int = 64, timeout_s: float = 30,
                hard_stop: bool = False) -> list[Answer]:
    """Offer `rate` requests a second for `duration_s`, open loop: request i starts at i / rate whatever
    the answers, as clients over their limit do (a closed loop slows down when refused). `new_connections`:
    one connection per request, so gateways sharing a port (SO_REUSEPORT) each get a share. `catch_up`
    False: a well-behaved client, never two requests closer than 1 / rate, even after this process stalls.
    `hard_stop`: nothing starts after `duration_s` (a rate this machine cannot reach sends fewer
    requests rather than taking longer)."""
    answers: list[Answer] = []
    gate = asyncio.Semaphore(max_in_flight)
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=new_connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        t0 = time.perf_counter()

        async def send() -> None:
            async with gate:
                started = time.perf_counter() - t0
                if hard_stop and started >= duration_s:
                    return
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
            if hard_stop and time.perf_counter() - t0 >= duration_s:
                break
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


@dataclass(frozen=True)
class Cell:
    """One tenant offered `load` times its limit: `kind` requests (limit per second) or tokens (limit per
    minute, `cost` tokens a request). Counted from `warmup_s` (its burst spent) for `window_s`."""

    kind: str
    limit: float  # requests per second, or tokens per minute
    load: float
    cost: int = 1
    window_s: float = 10.0

    @property
    def tenant(self) -> str:
        what = f"r{self.limit:g}" if self.kind == "requests" else f"tok{self.cost}"
        return f"{what}-{self.load:g}x"

    @property
    def rate_per_s(self) -> float:
        """The limit in units a second."""
        return self.limit if self.kind == "requests" else self.limit / 60

    @property
    def offered_rps(self) -> float:
        return self.rate_per_s * self.load / self.cost

    @property
    def warmup_s(self) -> float:
        """Long enough to spend the burst (GCRA's one-off allowance) at the excess offered rate."""
        burst_s = (1.0 if self.kind == "requests" else 60.0) * BURST_FRACTION
        return max(2.0, burst_s / (self.load - 1) + 2.0)

    def spec(self) -> dict[str, Any]:
        return _quota(self.limit) if self.kind == "requests" else _quota(1_000_000, int(self.limit))

    def body(self) -> bytes:
        return infer_body([" ".join(["bench"] * self.cost)])  # the classifier charges a token a word


# Phases, each run at once (separate tenants): low limits and the token cells together (little traffic,
# long windows: at 1/s, 30 s for one request either way to be 3%), then 50/s and 500/s one load at a time.
PHASES: tuple[tuple[Cell, ...], ...] = (
    (*(Cell("requests", r, x, window_s=30.0) for r in LIMITS[:2] for x in LOADS),
     *(Cell("tokens", TOKENS_PER_MINUTE, x, cost=c, window_s=18.0) for c in TOKEN_COSTS for x in LOADS
       if c == TOKEN_COSTS[0] or x == 3.0)),
    *((Cell("requests", LIMITS[2], x, window_s=10.0),) for x in LOADS),
    *((Cell("requests", LIMITS[3], x, window_s=6.0),) for x in LOADS),
)
BASELINE = Cell("requests", BASELINE_RPS, 3.0, window_s=5.0)

BENCH_TENANTS: dict[str, dict[str, Any]] = {
    **{cell.tenant: cell.spec() for phase in PHASES for cell in phase},
    "nolimit": {"rate_limit": {"exempt": True}},
    "checked": _quota(1_000_000),  # checked on every request, never over
}


def gateway_stat(platform: LocalPlatform, name: str) -> dict[str, int]:
    """One counter of each gateway process's admin /stats, by gateway (also used by tests/ratelimit)."""
    out = {}
    for gateway, envoy in platform.envoys.items():
        stats = envoy.admin_get(f"/stats?filter=^{re.escape(name)}$")
        out[gateway] = int(stats.split(":")[-1].strip() or 0)
    return out


def service_metric(platform: LocalPlatform, name: str, **labels: str) -> float:
    """One sample of the control plane's /metrics (the rate-limit service's), 0 if absent."""
    url = f"http://{platform.opts.host}:{platform.opts.status_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return 0.0


# Checks Envoy gave up on (timeout_ms): the tier's failure mode decided them, not the limiter.
RLS_TIMEOUTS = "cluster.fairshare/ratelimit.upstream_rq_timeout"


def admitted_rates(platform: LocalPlatform, key: SigningKey, topology: str) -> list[dict[str, Any]]:
    url = platform.gateway_url(REGION) + "/v2/models/classifier/infer"
    assert platform.config is not None
    auth = platform.config.platform.auth
    spread = len(platform.envoys) > 1
    rows = []
    phases = [*PHASES, *(((BASELINE,),) if spread else ())]
    for phase in phases:
        names = ", ".join(f"{c.tenant} ({c.offered_rps:g}/s)" for c in phase)
        seconds = max(c.warmup_s + c.window_s for c in phase)
        progress(NAME, f"{topology}: {names} for {seconds:.0f} s")
        # A new connection per request spreads a low rate over both gateways (one kept-alive
        # connection would stay on one); at hundreds a second the connection pool spreads it.
        new_connections = spread and sum(c.offered_rps for c in phase) <= 300
        before = gateway_stat(platform, "http.gateway.downstream_rq_2xx")
        timeouts_before = sum(gateway_stat(platform, RLS_TIMEOUTS).values())

        async def run(cells: tuple[Cell, ...] = phase, fresh: bool = new_connections) -> list[list[Answer]]:
            return await asyncio.gather(*(
                offer(Target(url, issue_token(key, auth, "nolimit" if c is BASELINE else c.tenant), c.body()),
                      c.offered_rps, c.warmup_s + c.window_s, new_connections=fresh, max_in_flight=128,
                      hard_stop=True)
                for c in cells))

        results = asyncio.run(run())
        after = gateway_stat(platform, "http.gateway.downstream_rq_2xx")
        split = {gw: after[gw] - before[gw] for gw in after}
        timeouts = sum(gateway_stat(platform, RLS_TIMEOUTS).values()) - timeouts_before
        for cell, answers in zip(phase, results, strict=True):
            row = _rate_row(cell, answers, topology, split, baseline=cell is BASELINE)
            row["checks_timed_out_in_phase"] = timeouts
            row["service_failed_open"] = service_metric(
                platform, "fairshare_ratelimit_decisions_total", tenant=cell.tenant, limit=cell.kind,
                outcome="failure_open")
            rows.append(row)
    return rows


def _rate_row(cell: Cell, answers: list[Answer], topology: str, split: dict[str, int],
              baseline: bool = False) -> dict[str, Any]:
    steady = [a for a in answers if a.started_s >= cell.warmup_s]
    span = answers[-1].started_s - cell.warmup_s + 1 / cell.offered_rps
    ok = [a for a in steady if a.status == 200]
    units = len(ok) if cell.kind == "requests" else sum(int(a.headers.get("x-fairshare-cost-tokens", 0)) for a in ok)
    rate = units / span
    offered = len(steady) * cell.cost / span
    ratio = rate / cell.rate_per_s
    if baseline:
        verdict = "baseline (exempt)"
    elif offered < cell.rate_per_s * 1.05:
        verdict = "not judged: offered below the limit"
    else:
        verdict = "met" if abs(ratio - 1) <= TARGET_ACCURACY else "not met"
    return {"topology": topology, "tenant": "nolimit (baseline)" if baseline else cell.tenant, "kind": cell.kind,
            "limit": cell.limit, "limit_per_s": cell.rate_per_s, "cost": cell.cost, "load": cell.load,
            "offered_target_per_s": cell.rate_per_s * cell.load, "offered_per_s": offered,
            "offered_load": offered / cell.rate_per_s, "admitted_per_s": rate, "ratio": ratio,
            "refused_429": sum(a.status == 429 for a in steady),
            "errors": sum(a.status not in (200, 429) for a in steady),
            "warmup_s": cell.warmup_s, "window_s": span, "gateway_2xx_in_phase": split, "verdict": verdict}


# -- 2. decision latency ---------------------------------------------------------------------------------

def decision_latency(cfg: Path, redis_url: str, calls: int = 2000) -> dict[str, Any]:
    """Each backend in its own service process (as in the control plane), called over gRPC one at a time."""
    out: dict[str, Any] = {}
    for backend in ("memory", "redis"):
        port = free_port()
        argv = [sys.executable, "-m", "bench.ratelimit", "serve", "--config", str(cfg), "--port", str(port)]
        if backend == "redis":
            argv += ["--redis-url", redis_url]
        proc = subprocess.Popen(argv)
        try:
            progress(NAME, f"{backend}: {calls} decisions, and {calls} answered without a counter")
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

def added_latency(platform: LocalPlatform, key: SigningKey, rounds: int = 4, per_round: int = 300) -> dict[str, Any]:
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
        progress(NAME, f"round {r + 1}/{rounds} done")
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

def _cell_label(row: dict[str, Any]) -> str:
    if row["kind"] == "requests":
        return f"{row['limit']:g}/s"
    return f"tokens {row['limit']:g}/min\n({row['cost']}/request)"


def plot(rates: list[dict[str, Any]], decisions: dict[str, Any], added: dict[str, Any],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 9))
    grid = fig.add_gridspec(2, 2, height_ratios=(1.2, 1))
    colours = {2.0: "#9ecae1", 3.0: "#3b7dd8", 10.0: "#08306b"}
    for i, topology in enumerate(TOPOLOGIES):
        ax = fig.add_subplot(grid[0, i])
        rows = [r for r in rates if r["topology"] == topology and not r["tenant"].startswith("nolimit")]
        labels = list(dict.fromkeys(_cell_label(r) for r in rows))
        ax.axhspan(1 - TARGET_ACCURACY, 1 + TARGET_ACCURACY, color="#2ca02c", alpha=0.2, label="target: limit +-5%")
        width = 0.8 / len(LOADS)
        for j, load in enumerate(LOADS):
            for r in rows:
                if r["load"] != load:
                    continue
                x = labels.index(_cell_label(r)) - 0.4 + width * (j + 0.5)
                judged = not r["verdict"].startswith("not judged")
                ax.bar(x, r["ratio"], width=width * 0.9, color=colours[load], hatch="" if judged else "//",
                       label=f"{load:g}x offered" if r is next(q for q in rows if q["load"] == load) else None)
                ax.annotate(f"{r['ratio']:.2f}\n{r['offered_load']:.1f}x", (x, r["ratio"]), ha="center",
                            va="bottom", fontsize=6)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylim(0, 1.35)
        ax.set_ylabel("admitted rate / limit")
        ax.set_title(f"{topology}: admitted / limit (label: ratio, offered load reached; hatched: not saturated)",
                     fontsize=8)
        ax.legend(loc="lower left", fontsize=7)
    ax2 = fig.add_subplot(grid[1, :])
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
    ax2.bar([q - 0.2 for q in pos], p50, width=0.4, label="p50")
    ax2.bar([q + 0.2 for q in pos], p99, width=0.4, label="p99")
    ax2.set_xticks(list(pos), labels, fontsize=7)
    ax2.set_ylabel("ms")
    ax2.set_title("decision latency and request latency (2 gateways, Redis)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def added_deltas(added: dict[str, Any]) -> dict[str, float]:
    return {p: added["global check"][f"{p}_ms"] - added["no limit"][f"{p}_ms"] for p in ("p50", "p99")}


def markdown(rates: list[dict[str, Any]], decisions: dict[str, Any], added: dict[str, Any]) -> str:
    parts = ["# Rate limits",
             f"Admitted rate / limit (target within +-{TARGET_ACCURACY:.0%}), counted after each tenant's burst is "
             "spent; in brackets the offered load actually reached (offered / limit). Low limits and token "
             "cells ran at once as separate tenants; 500/s one load at a time."]
    for topology in TOPOLOGIES:
        rows = [r for r in rates if r["topology"] == topology and not r["tenant"].startswith("nolimit")]
        grid_rows = []
        for label in dict.fromkeys(_cell_label(r) for r in rows):
            cells = {r["load"]: r for r in rows if _cell_label(r) == label}
            grid_rows.append([label.replace("\n", " "), *(
                f"{cells[x]['ratio']:.3f} ({cells[x]['offered_load']:.1f}x)"
                + ("" if cells[x]["verdict"] == "met" else f" {cells[x]['verdict']}") if x in cells else "-"
                for x in LOADS)])
        parts += [f"**{topology}**", markdown_table(["limit", *(f"{x:g}x offered" for x in LOADS)], grid_rows)]
    detail = [[r["topology"], r["tenant"], f"{r['limit_per_s']:g}", f"{r['load']:g}x",
               f"{r['offered_per_s']:.1f}", f"{r['admitted_per_s']:.2f}", f"{r['ratio']:.3f}", r["refused_429"],
               r["errors"], f"{r['window_s']:.1f}",
               " / ".join(str(v) for v in r["gateway_2xx_in_phase"].values()), r["checks_timed_out_in_phase"],
               r["verdict"]] for r in rates]
    parts += ["Every cell (units a second: requests, or tokens for the token cells; 2xx per gateway and checks "
              "Envoy gave up on after `timeout_ms` (decided by the tier's failure mode, open here, not by the "
              "limiter) over the whole phase, all cells of that phase together):",
              markdown_table(["topology", "tenant", "limit/s", "load", "offered/s", "admitted/s", "admitted/limit",
                              "429", "errors", "window s", "2xx per gateway", "checks timed out", "verdict"], detail)]
    dec_rows = [[b, k.replace("_", " "), s[k]["p50_ms"], s[k]["p99_ms"], s[k]["count"]]
                for b, s in decisions.items() for k in ("decision", "no_counter")]
    add_rows = [[n, added[n]["p50_ms"], added[n]["p99_ms"], added[n]["count"]] for n in ("no limit", "global check")]
    d = added_deltas(added)
    rls = ", ".join(f"{gw}: p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms" for gw, t in added["envoy_rls_rq_time"].items())
    parts += [
        "Rate-limit service decision latency over gRPC (ms), one call at a time; `no counter` is a call the "
        "service answers without touching a counter (the gRPC round trip alone, the baseline):",
        markdown_table(["backend", "call", "p50", "p99", "calls"], dec_rows),
        f"Request latency through Envoy, one request at a time (ms): the global check adds {d['p50']:+.3f} ms at "
        f"p50 and {d['p99']:+.3f} ms at p99 (target: under {TARGET_P50_ADDED_MS:g} ms at p50). Envoy's own wait on "
        f"the service (its calls, checks and settlements; whole ms): {rls}.",
        markdown_table(["route", "p50", "p99", "requests"], add_rows),
        "![rate limits](ratelimit.png)",
    ]
    return "\n\n".join(parts)


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
    rates: list[dict[str, Any]] = []
    try:
        for topology, gateways, redis_url in ((TOPOLOGIES[0], 1, None), (TOPOLOGIES[1], 2, redis.url)):
            state = root / f"state-{gateways}"
            platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=state, xds_port=free_port(),
                                                     status_port=free_port(), gateways_per_region=gateways,
                                                     ratelimit_redis_url=redis_url))
            try:
                progress(NAME, f"starting control plane, runtime and {topology}...")
                platform.start()
                key = SigningKey.load_or_create(state)
                progress(NAME, f"1/3 admitted rate against the limit, {topology}")
                rates += admitted_rates(platform, key, topology)
                if gateways == 2:
                    progress(NAME, "3/3 latency added by the global check at the gateway")
                    added = added_latency(platform, key)
            finally:
                platform.stop()
        progress(NAME, "2/3 decision latency of the service")
        decisions = decision_latency(cfg, redis.url)
    finally:
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    results = {"environment": environment(), "limits_rps": LIMITS, "loads": LOADS,
               "tokens_per_minute": TOKENS_PER_MINUTE, "token_estimate": TOKEN_ESTIMATE, "admitted": rates,
               "decision_latency": decisions, "gateway_latency": added, "added_ms": added_deltas(added)}
    plot(rates, decisions, added, results_dir() / "ratelimit.png")
    path = write_results(NAME, results, markdown(rates, decisions, added))
    print(markdown(rates, decisions, added))
    print(f"\nwrote {path} and {results_dir() / 'ratelimit.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
