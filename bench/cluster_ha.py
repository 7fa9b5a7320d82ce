"""Losing a control-plane replica under load: `python -m bench.cluster_ha` (about a minute).

Two control planes on the same config (rate limits in one Redis), two Envoy gateways sharing the region's
port, each on one replica's ADS stream; a steady open-loop load, one connection per request so both
gateways serve it. In one run:

1. Baseline: the same load with no loss (failed requests and latency without any event).
2. Loss: the replica holding the most Envoys is SIGKILLed mid-load. Reported: requests failed (target 0),
   the time until every Envoy is connected again (from Envoy's own `control_plane.connected_state`, and
   until the survivor reports it applied the published version), and whether anything churned (snapshot
   versions, Envoy's listener_manager and cluster_manager counters).

Results: bench/results/cluster_ha.{json,md}. Also the helpers tests/controlplane/test_ha.py drives.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import Result, Target, one
from bench.ratelimit import gateway_stat
from bench.ratelimit import write_config as ratelimit_config
from bench.report import environment, latency_stats, markdown_table, progress, write_results
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import naming
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

NAME = "cluster_ha"
REGION = "us-east-1"
RATE = 40.0  # requests a second, both tenants together
PHASE_S = 8.0  # load after the event (the baseline: in all)
# One tenant per failure mode: an open-tier request survives a failed rate-limit check, a closed-tier one
# would get 503, so only zero failures for `strict` shows the checks never failed either.
TENANTS: dict[str, dict[str, Any]] = {
    "steady": {"tier": "open", "quotas": {"requests_per_second": 10_000, "tokens_per_minute": 100_000_000}},
    "strict": {"tier": "closed", "quotas": {"requests_per_second": 10_000, "tokens_per_minute": 100_000_000}},
}
# Envoy's counters that move when a config update rebuilds or drains something.
CHURN_STATS = (
    "listener_manager.listener_modified", "listener_manager.listener_removed",
    "listener_manager.listener_in_place_updated", "listener_manager.total_listeners_draining",
    "cluster_manager.cluster_modified", "cluster_manager.cluster_removed",
)
# Rate-limit checks asked again after their connection died with a replica (the filter's retry policy).
RLS_RETRIES = f"cluster.{naming.RATELIMIT_CLUSTER}.upstream_rq_retry"


def start_platform(root: Path, control_planes: int = 2, gateways: int = 2) -> LocalPlatform:
    cfg = ratelimit_config(root, free_port(), TENANTS)
    platform = LocalPlatform(PlatformOptions(
        config_dir=cfg, state_dir=root / "state", xds_port=free_port(), status_port=free_port(),
        gateways_per_region=gateways, control_planes=control_planes,
    ))
    return platform.start()


def targets(platform: LocalPlatform) -> list[Target]:
    assert platform.config is not None
    key = SigningKey.load_or_create(platform.opts.state_dir)
    url = platform.gateway_url(REGION) + "/v2/models/classifier/infer"
    return [Target(url, issue_token(key, platform.config.platform.auth, t)) for t in sorted(TENANTS)]


@dataclass
class SteadyLoad:
    """Open-loop load in a thread of its own until stopped: request i starts at i / rate, each on a new
    connection (gateways sharing a port each get a share), alternating between the targets."""

    targets: list[Target]
    rate: float = RATE
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def start(self) -> SteadyLoad:
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="steady-load", daemon=True)
        self._thread.start()
        return self

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def wait_answers(self, count: int, after: float = 0.0, timeout: float = 60.0) -> None:
        """Until `count` requests started after `after` (seconds into the load) have been answered."""
        deadline = time.monotonic() + timeout
        while sum(r.started_s >= after for r in list(self.results)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} answers {timeout:.0f}s after {after:.1f}s")
            time.sleep(0.05)

    def stop(self) -> list[Result]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        return sorted(self.results, key=lambda r: r.started_s)

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            tasks: set[asyncio.Task[None]] = set()

            async def send(target: Target) -> None:
                self.results.append(await one(session, target, self._t0))

            i = 0
            while not self._stop.is_set():
                delay = self._t0 + i / self.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(send(self.targets[i % len(self.targets)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks)


def node_ids(platform: LocalPlatform) -> list[str]:
    return [f"gateway-{REGION}"] + [f"gateway-{REGION}-{n + 1}" for n in range(1, len(platform.envoys))]


def connected_to(platform: LocalPlatform, index: int) -> list[str]:
    """The Envoys the control plane `index` has a live stream with, running its published version."""
    xds = platform.control_plane_status(index)["xds"]
    published = xds["regions"][REGION]["version"]
    return sorted(n for n, node in xds["nodes"].items()
                  if node.get("connected") and node.get("applied_version") == published)


def versions(platform: LocalPlatform, index: int) -> dict[str, Any]:
    status = platform.control_plane_status(index)
    return {"config": status["config_version"],
            "regions": {r: v["version"] for r, v in status["xds"]["regions"].items()}}


def churn(platform: LocalPlatform) -> dict[str, dict[str, int]]:
    return {stat: gateway_stat(platform, stat) for stat in CHURN_STATS}


def rls_retries(platform: LocalPlatform) -> int:
    return sum(gateway_stat(platform, RLS_RETRIES).values())


def busiest(platform: LocalPlatform) -> int:
    """The control plane with the most Envoys on it: the one whose loss moves them."""
    counts = [len(connected_to(platform, i)) for i in range(len(platform.control_plane_ports))]
    return counts.index(max(counts))


def kill_control_plane(platform: LocalPlatform, index: int) -> None:
    child = platform.supervisor.children[platform.control_plane_name(index)]
    assert child.proc is not None
    child.proc.kill()  # SIGKILL: no goodbye on the streams, as when a node vanishes
    child.proc.wait()


def _envoy_stat(platform: LocalPlatform, key: str, name: str) -> int:
    text = platform.envoys[key].admin_get(f"/stats?filter=^{name}$")
    return int(text.split(":")[-1].strip() or 0)


def _envoy_key(node_id: str) -> str:
    """gateway-us-east-1 -> us-east-1, gateway-us-east-1-2 -> us-east-1#2 (LocalPlatform.envoys' keys)."""
    rest = node_id.removeprefix(f"gateway-{REGION}")
    return REGION + (f"#{rest[1:]}" if rest else "")


XDS_CONNECTIONS = "cluster.fairshare_xds.upstream_cx_total"


def wait_reconnected(platform: LocalPlatform, survivor: int, moved: list[str], since: float,
                     cx_before: dict[str, int], timeout: float = 30.0) -> dict[str, float]:
    """Seconds from `since` (time.monotonic()) until each moved Envoy reports a live ADS stream again (it
    opened a new xDS connection and control_plane.connected_state is 1: the state drops to 0 before any
    new attempt), and until the survivor reports every Envoy on the published version. The timeout is a
    hang guard, not a target."""
    envoy_s: dict[str, float] = {}
    keys = [_envoy_key(n) for n in moved]
    deadline = time.monotonic() + timeout
    while len(envoy_s) < len(keys):
        for key in keys:
            if key not in envoy_s and _envoy_stat(platform, key, XDS_CONNECTIONS) > cx_before[key] \
                    and _envoy_stat(platform, key, "control_plane.connected_state") == 1:
                envoy_s[key] = time.monotonic() - since
        if time.monotonic() > deadline:
            raise TimeoutError(f"Envoys not reconnected after {timeout:.0f}s: {sorted(set(keys) - set(envoy_s))}")
        time.sleep(0.01)
    while connected_to(platform, survivor) != sorted(node_ids(platform)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the survivor does not report every Envoy: {connected_to(platform, survivor)}")
        time.sleep(0.01)
    return {**{f"envoy {k}": v for k, v in sorted(envoy_s.items())}, "survivor reports all": time.monotonic() - since}


def failures(results: list[Result]) -> list[str]:
    return [f"{r.started_s:.2f}s: {r.status} {r.error or ''}".strip() for r in results if not r.ok]


def baseline(platform: LocalPlatform, seconds: float = PHASE_S) -> dict[str, Any]:
    load = SteadyLoad(targets(platform)).start()
    load.wait_answers(int(RATE * seconds))
    results = load.stop()
    return {"requests": len(results), "failed": len(failures(results)), "failures": failures(results)[:20],
            "latency": latency_stats([r.latency_s for r in results if r.ok])}


def loss(platform: LocalPlatform, seconds: float = PHASE_S) -> dict[str, Any]:
    before_churn, retries_before = churn(platform), rls_retries(platform)
    victim = busiest(platform)
    survivor = 1 - victim
    moved = connected_to(platform, victim)
    before = versions(platform, survivor)
    load = SteadyLoad(targets(platform)).start()
    load.wait_answers(int(RATE * 2))
    cx_before = {key: _envoy_stat(platform, key, XDS_CONNECTIONS) for key in platform.envoys}
    killed_at, killed_in_load = time.monotonic(), load.now()
    kill_control_plane(platform, victim)
    reconnect = wait_reconnected(platform, survivor, moved, killed_at, cx_before)
    load.wait_answers(int(RATE * seconds), after=killed_in_load)
    results = load.stop()
    after_churn = churn(platform)
    return {
        "victim": platform.control_plane_name(victim), "envoys_moved": moved,
        "requests": len(results), "failed": len(failures(results)), "failures": failures(results)[:20],
        "latency": latency_stats([r.latency_s for r in results if r.ok]),
        "reconnect_s": reconnect,
        "versions_before": before, "versions_after": versions(platform, survivor),
        "churn": {s: {g: after_churn[s][g] - before_churn[s][g] for g in after_churn[s]} for s in CHURN_STATS},
        "ratelimit_checks_retried": rls_retries(platform) - retries_before,
    }


@contextmanager
def running(root: Path) -> Iterator[LocalPlatform]:
    platform = start_platform(root)
    try:
        yield platform
    finally:
        platform.stop()


def markdown(base: dict[str, Any], lost: dict[str, Any]) -> str:
    def lat(d: dict[str, Any]) -> str:
        return f"{d['latency'].get('p50_ms', 0):.1f} / {d['latency'].get('p99_ms', 0):.1f}"

    churned = {s: v for s, v in lost["churn"].items() if any(v.values())}
    rows = [["baseline (no loss)", base["requests"], base["failed"], lat(base), "-"],
            [f"{lost['victim']} SIGKILLed", lost["requests"], lost["failed"], lat(lost),
             f"{max(lost['reconnect_s'].values()):.2f}"]]
    lines = [
        "# Losing a control-plane replica under load", "",
        f"2 control planes (Redis counters), 2 Envoys on one port, {RATE:g} requests/s open loop, one connection "
        "each, half on a closed-failure tier. Target: 0 failed.", "",
        markdown_table(["run", "requests", "failed", "p50 / p99 ms", "all reconnected (s)"], rows), "",
        "Reconnect, seconds after the kill: " + ", ".join(f"{k} {v:.2f}" for k, v in lost["reconnect_s"].items()),
        "", f"Envoys that moved: {', '.join(lost['envoys_moved']) or 'none'}. Snapshot versions "
        f"{'unchanged' if lost['versions_before'] == lost['versions_after'] else 'CHANGED'} "
        f"({lost['versions_after']['regions']}); listener/cluster churn: {churned or 'none'}. Rate-limit checks "
        f"retried on a live replica: {lost['ratelimit_checks_retried']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench.cluster_ha", description=__doc__).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fairshare-cluster-ha-") as tmp, running(Path(tmp)) as platform:
        progress(NAME, "baseline: steady load, no loss")
        base = baseline(platform)
        progress(NAME, f"baseline: {base['failed']} of {base['requests']} failed; now killing a control plane")
        lost = loss(platform)
        progress(NAME, f"loss: {lost['failed']} of {lost['requests']} failed; reconnected {lost['reconnect_s']}")
    results = {"environment": environment(), "rate_rps": RATE, "baseline": base, "loss": lost,
               "target_failed": 0, "met": lost["failed"] == 0}
    path = write_results(NAME, results, markdown(base, lost))
    progress(NAME, f"wrote {path}")
    return 0 if lost["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
