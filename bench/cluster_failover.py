"""Failover inside residency under load (docs/design/0004): kill every us-east-1 replica of a pool while
two tenants send steady traffic to the US gateway, then bring them back.

`roamer` (allowed in us-east-1 and eu-west-1, failover eu-west-1) must keep getting 200s, served in the
EU; `homebody` (US only) must get the gateway's 503 naming the missing failover and never reach the EU.
Measured: time to fail over (kill -> roamer served from the EU only) and to return home (US replicas
ready -> roamer served from the US again), requests failed meanwhile. Baseline in the same run: what
bounds both, outlier detection's configured sweep and ejection times (compiler/clusters.py), and the
US-only tenant, which has no failover and is down for the whole outage.

    python -m bench.cluster_failover [--replicas 2] [--outage-s 6] [--home-s 8] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.loadgen import Target, infer_body, one
from bench.models_real import own_copy
from bench.report import environment, markdown_table, progress, results_dir, write_results
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import clusters
from xds_server.local.layout import ReplicaSpec
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port, wait_http

BENCH = "cluster_failover"
US, EU = "us-east-1", "eu-west-1"
POOL = "cpu"
ROAMER, HOMEBODY = "roamer", "homebody"
TARGET_S = 5.0
# With `own_model` (an ONNX artifact): every tenant also brings it as its own model of this name on POOL.
OWN_MODEL = "router"


def write_config(root: Path, replicas: int = 1, own_model: Path | None = None) -> Path:
    """Two regions sharing one pool and the light model; no rate limits (bursts are not 429'd)."""
    cfg = root / "config"
    (cfg / "tenants").mkdir(parents=True)
    quotas = {"concurrency": 64, "requests_per_second": 1000, "tokens_per_minute": 100_000_000, "gpus": 0}
    tier: dict[str, Any] = {"weight": 1, "quotas": quotas}
    pool: dict[str, Any] = {"name": POOL, "replicas": replicas}
    if own_model is not None:
        tier["own_models"] = {"max_per_tenant": 1, "max_bytes_per_model": 50_000_000, "formats": ["onnx"]}
        pool["model_cache_mb"] = 64
    (cfg / "tiers.yaml").write_text(yaml.safe_dump({"tiers": {"std": tier}}))
    (cfg / "platform.yaml").write_text(yaml.safe_dump({"ratelimit": {"enabled": False}}))
    (cfg / "regions.yaml").write_text(yaml.safe_dump({"regions": [
        {"id": region, "gateway_port": free_port(), "pools": [pool]} for region in (US, EU)]}))
    (cfg / "models.yaml").write_text(yaml.safe_dump({"models": {"classifier": {
        "kind": "classifier", "versions": {"v1": {"pool": POOL, "loader": "lexicon"}}}}}))
    tenants = {
        ROAMER: {"home": US, "allowed": [US, EU], "failover": [EU]},
        HOMEBODY: {"home": US, "allowed": [US]},
    }
    for tenant, regions in tenants.items():
        spec: dict[str, Any] = {"id": tenant, "tier": "std", "regions": regions,
                                "models": {"classifier": {"split": {"v1": 100}}}}
        if own_model is not None:
            digest = hashlib.sha256(own_model.read_bytes()).hexdigest()
            version = {"artifact": str(own_copy(cfg, tenant, own_model.resolve())), "sha256": digest}
            spec["own_models"] = {OWN_MODEL: {"format": "onnx", "pool": POOL, "versions": {"1": version}}}
        (cfg / "tenants" / f"{tenant}.yaml").write_text(yaml.safe_dump(spec))
    return cfg


@dataclass
class FailoverPlatform:
    platform: LocalPlatform
    key: SigningKey

    def token(self, tenant: str) -> str:
        assert self.platform.config is not None
        return issue_token(self.key, self.platform.config.platform.auth, tenant)

    def target(self, tenant: str, region: str = US) -> Target:
        return Target(self.platform.gateway_url(region) + "/v2/models/classifier/infer", self.token(tenant),
                      infer_body(["fine"]))

    def replicas(self, region: str) -> list[ReplicaSpec]:
        return [r for r in self.platform.replicas if r.region == region and r.pool == POOL]

    def kill(self, region: str) -> None:
        """SIGKILL: a dead process (connections refused), not a drain."""
        for replica in self.replicas(region):
            proc = self.platform.supervisor.children[replica.name].proc
            assert proc is not None
            proc.kill()
            proc.wait()

    def restart(self, region: str) -> None:
        """Start the region's replicas again on their ports (Envoy's endpoints stay valid); returns when
        every one is ready."""
        for replica in self.replicas(region):
            self.platform._start_replica(replica)  # the launcher's own argv and environment
        for replica in self.replicas(region):
            wait_http(f"http://{self.platform.opts.host}:{replica.port}/v2/health/ready", 60)

    def runtime_scheduled(self, region: str, tenant: str) -> float:
        """Requests of `tenant` any replica of `region` handed to its scheduler (its /metrics)."""
        total = 0.0
        pattern = re.compile(r'^fairshare_runtime_scheduled_requests_total\{([^}]*)\} (\S+)$')
        for replica in self.replicas(region):
            url = f"http://{self.platform.opts.host}:{replica.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                for line in resp.read().decode().splitlines():
                    m = pattern.match(line)
                    if m and f'tenant="{tenant}"' in m.group(1):
                        total += float(m.group(2))
        return total


@contextmanager
def failover_platform(root: Path, replicas: int = 1, own_model: Path | None = None) -> Iterator[FailoverPlatform]:
    cfg = write_config(root, replicas, own_model)
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=state, xds_port=free_port(),
                                             status_port=free_port()))
    platform.start()
    try:
        yield FailoverPlatform(platform, SigningKey.load_or_create(state))
    finally:
        platform.stop()


@dataclass(frozen=True)
class Sample:
    tenant: str
    at: float  # time.perf_counter() when sent
    status: int
    region: str | None  # of the replica that answered, None for the gateway's own answer
    request_id: str | None = None


@dataclass
class Load:
    """Steady closed-loop load from `concurrency` workers per tenant until stopped, through `platform`'s
    gateways: which replica answered each request is in their access logs (the gateway keeps the runtime's
    x-fairshare-replica off its responses), by the request id each response carries."""

    targets: dict[str, Target]
    platform: LocalPlatform
    concurrency: int = 2
    _sent: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def samples(self) -> list[Sample]:
        """Every request whose gateway has logged it so far (Envoy flushes its log within about a second),
        with the region of the replica that answered it; a request that got no response at all is there
        at once (no region)."""
        sent = list(self._sent)
        where = self.platform.served_by()
        return [s if s.request_id is None else
                dataclasses.replace(s, region=(where[s.request_id] or "").split("/")[0] or None)
                for s in sent if s.request_id is None or s.request_id in where]

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)

    def since(self, t: float, tenant: str) -> list[Sample]:
        return [s for s in self.samples if s.tenant == tenant and s.at >= t]

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency * len(self.targets))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def worker(tenant: str, target: Target) -> None:
                while not self._stop.is_set():
                    r = await one(session, target)
                    self._sent.append(Sample(tenant, r.started_s, r.status, None, r.request_id))

            await asyncio.gather(*(worker(t, target) for t, target in self.targets.items()
                                   for _ in range(self.concurrency)))


def settled_at(samples: list[Sample], region: str) -> float | None:
    """Send time of the first request from which on every request was a 200 served in `region`."""
    at = None
    for s in sorted(samples, key=lambda s: s.at):
        good = s.status == 200 and s.region == region
        at = (s.at if at is None else at) if good else None
    return at


def first_in(samples: list[Sample], region: str) -> float | None:
    return next((s.at for s in sorted(samples, key=lambda s: s.at) if s.status == 200 and s.region == region), None)


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


def measure(fp: FailoverPlatform, outage_s: float, home_s: float, concurrency: int) -> dict[str, Any]:
    targets = {ROAMER: fp.target(ROAMER), HOMEBODY: fp.target(HOMEBODY)}
    eu_homebody_before = fp.runtime_scheduled(EU, HOMEBODY)
    with Load(targets, fp.platform, concurrency) as load:
        t0 = time.perf_counter()
        wait_until(lambda: len(load.since(t0, ROAMER)) > 50, 30)
        progress(BENCH, f"steady load ({concurrency} in flight per tenant); killing the {US} replicas")
        killed = time.perf_counter()
        fp.kill(US)
        time.sleep(outage_s)
        progress(BENCH, f"restarting the {US} replicas")
        restarting = time.perf_counter()
        fp.restart(US)
        ready = time.perf_counter()
        progress(BENCH, f"{US} ready after {ready - restarting:.1f} s; watching traffic return home")
        time.sleep(home_s)
        end = time.perf_counter()
    samples = [s for s in load.samples if s.at >= t0]
    # Up to the restart: once a replica process is back it may answer before it is ready (locally; in a
    # cluster an unready pod is not in the EndpointSlice), which is return home's part.
    outage = [s for s in samples if killed <= s.at < restarting]
    after = [s for s in samples if s.at >= ready]

    def of(tenant: str, rows: list[Sample]) -> list[Sample]:
        return [s for s in rows if s.tenant == tenant]

    fo_at = settled_at(of(ROAMER, outage), EU)
    home_first = first_in(of(ROAMER, after), US)
    home_all = settled_at(of(ROAMER, after), US)
    homebody_back = settled_at(of(HOMEBODY, after), US)
    roamer_rows = of(ROAMER, [s for s in samples if s.at >= killed])
    od = clusters._OUTLIER_DETECTION
    return {
        "failover_s": None if fo_at is None else fo_at - killed,
        "return_home_first_s": None if home_first is None else home_first - ready,
        "return_home_all_s": None if home_all is None else home_all - ready,
        "roamer_failed": sum(1 for s in roamer_rows if s.status != 200),
        "roamer_requests": len(roamer_rows),
        "roamer_served_eu_during_outage": sum(1 for s in of(ROAMER, outage) if s.region == EU and s.status == 200),
        "homebody_503_during_outage": sum(1 for s in of(HOMEBODY, outage) if s.status == 503),
        "homebody_requests_during_outage": len(of(HOMEBODY, outage)),
        "homebody_served_outside_us": sum(1 for s in of(HOMEBODY, samples) if s.region not in (None, US)),
        "homebody_scheduled_in_eu": fp.runtime_scheduled(EU, HOMEBODY) - eu_homebody_before,
        "homebody_back_s": None if homebody_back is None else homebody_back - ready,
        "restart_to_ready_s": ready - restarting,
        "outlier_detection": {
            "interval_s": od.interval.seconds, "base_ejection_s": od.base_ejection_time.seconds,
            "max_ejection_s": od.max_ejection_time.seconds,
            "consecutive_local_origin_failure": od.consecutive_local_origin_failure.value,
            "return_home_bound_s": od.max_ejection_time.seconds + od.interval.seconds,
        },
        "timeline": [{"tenant": s.tenant, "t": round(s.at - killed, 4), "status": s.status, "region": s.region}
                     for s in samples],
        "marks": {"killed": 0.0, "restarting": restarting - killed, "ready": ready - killed, "end": end - killed},
    }


def plot(result: dict[str, Any], path: Path, bin_s: float = 0.5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    rows = result["timeline"]
    start = min(r["t"] for r in rows)
    for ax, tenant in zip(axes, (ROAMER, HOMEBODY), strict=True):
        series = {f"200 from {US}": [], f"200 from {EU}": [], "failed": []}  # type: dict[str, list[float]]
        for r in rows:
            if r["tenant"] != tenant:
                continue
            key = "failed" if r["status"] != 200 else f"200 from {r['region']}"
            series.setdefault(key, []).append(r["t"])
        edges = [start + i * bin_s for i in range(int((result["marks"]["end"] - start) / bin_s) + 2)]
        for (label, ts), colour in zip(series.items(), ("#1f77b4", "#2ca02c", "#d62728"), strict=False):
            counts = [sum(1 for t in ts if lo <= t < lo + bin_s) / bin_s for lo in edges[:-1]]
            ax.step(edges[:-1], counts, where="post", label=label, color=colour)
        for mark, style in (("killed", "--"), ("ready", ":")):
            ax.axvline(result["marks"][mark], color="black", linestyle=style, label=f"{US} {mark}")
        ax.set_ylabel("requests/s")
        ax.set_title(f"{tenant}: requests per region", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel(f"seconds since the {US} replicas were killed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    od = result["outlier_detection"]

    def s(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f} s"

    def verdict(v: float | None) -> str:
        return "missed" if v is None or v >= TARGET_S else "met"

    rows = [
        ["time to fail over (kill -> roamer served from eu-west-1 only)", s(result["failover_s"]),
         f"< {TARGET_S:g} s: {verdict(result['failover_s'])}"],
        ["time to return home, first US answer (US ready -> first 200 from us-east-1)",
         s(result["return_home_first_s"]), f"< {TARGET_S:g} s: {verdict(result['return_home_first_s'])}"],
        ["time to return home, all traffic (US ready -> every request from us-east-1)",
         s(result["return_home_all_s"]), f"bound: max ejection + sweep = {od['return_home_bound_s']} s"],
        ["roamer requests failed from the kill on", f"{result['roamer_failed']} of {result['roamer_requests']}",
         "target: 0"],
        ["homebody: 503 during the outage", f"{result['homebody_503_during_outage']} of "
         f"{result['homebody_requests_during_outage']}", "all (no failover region allowed)"],
        ["homebody requests served outside us-east-1 (responses; EU runtimes' scheduler count)",
         f"{result['homebody_served_outside_us']}; {result['homebody_scheduled_in_eu']:g}", "0"],
        ["baseline: homebody back (US ready -> every request 200 from us-east-1)", s(result["homebody_back_s"]),
         "no failover: bounded by the same ejection"],
    ]
    return "\n".join([
        "# Failover inside residency (bench/cluster_failover.py)",
        "",
        f"Two regions, {args.replicas} replica(s) of the pool each, {args.concurrency} requests in flight per "
        f"tenant on the us-east-1 gateway; every us-east-1 replica SIGKILLed, restarted after {args.outage_s:g} s.",
        "",
        markdown_table(["measure", "result", "target / baseline"], rows),
        "",
        f"What bounds the figures (compiler/clusters.py): a dead replica is ejected at its "
        f"connection failure number {od['consecutive_local_origin_failure']}, and the failed attempt is retried on "
        f"another host and priority at once, so failover does not wait for the {od['interval_s']} s sweep. A "
        f"replica is let back {od['base_ejection_s']} s after its first ejection (n x that, at most "
        f"{od['max_ejection_s']} s), at a sweep, so return home is bounded by {od['return_home_bound_s']} s "
        "after the replica can serve; in a cluster the pod's EndpointSlice readiness (EDS) brings it back sooner.",
        "",
        f"Restart to ready (runtime start-up, not the gateway): {result['restart_to_ready_s']:.2f} s.",
        "",
        "![requests per region over time](cluster_failover.png)",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--outage-s", type=float, default=6.0)
    parser.add_argument("--home-s", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fairshare-failover-") as tmp:
        progress(BENCH, f"starting two regions, {args.replicas} replica(s) each")
        with failover_platform(Path(tmp), args.replicas) as fp:
            result = measure(fp, args.outage_s, args.home_s, args.concurrency)
    plot(result, results_dir() / "cluster_failover.png")
    summary = {k: v for k, v in result.items() if k != "timeline"}
    md = markdown(result, args)
    write_results(BENCH, {"environment": environment(), "args": vars(args), **summary,
                          "timeline": result["timeline"]}, md)
    print(md)


if __name__ == "__main__":
    main()
