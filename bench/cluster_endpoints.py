"""Endpoints from Kubernetes at fleet scale (the `make bench-cluster` endpoint parts).

(a) An endpoint change written to the (stand-in) Kubernetes API, until Envoy uses it: 10,000 tenants,
    200 endpoints, the control plane following EndpointSlices and republishing the endpoint sets alone.
    Baseline, same run, same Envoy and config: the same change published by a full reload after the
    endpoints file is edited (how a change reached Envoy before there was an endpoint source).
(b) Requests failed during a rolling restart of a pool under load (real runtimes, a real Envoy, the control
    plane started with --endpoints-from kubernetes). Target 0.

    python -m bench.cluster_endpoints [--tenants 1000 10000] [--endpoints 200] [--changes 3] [--rolls 2]

Writes bench/results/cluster_endpoints.{json,md}. The API server is the stand-in the tests use
(tests/endpoints/apiserver.py): a real cluster adds the API server's and the EndpointSlice controller's
own delays, which this does not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import shutil
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench import report
from bench.loadgen import served_by
from bench.report import environment, markdown_table, write_results
from bench.synth import write_config
from tests.endpoints.apiserver import StandInApiServer, endpoint_slice
from tests.endpoints.cluster import KubePool
from xds_server.auth.keys import SigningKey
from xds_server.compiler import Compiler, Endpoint, EndpointDirectory, naming
from xds_server.controlplane.service import ControlPlane
from xds_server.endpoints.kubernetes import KubernetesEndpoints, KubernetesSettings
from xds_server.endpoints.static import StaticEndpoints
from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.process import EnvoyProcess, find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.local.certs import LocalPki
from xds_server.local.processes import free_port
from xds_server.xds.server import XdsServer
from xds_server.xds.store import SnapshotStore

REGION = "us-east-1"
POOLS = ("cpu-general", "gpu-small")  # the example config's pools in the region
PROBED_POOL = "cpu-general"  # classifier's pool: the probed tenant's cluster draws from it
PROBED_CLUSTER = naming.tenant_cluster("t00001", "classifier", REGION)
SLICE_SIZE = 100  # the EndpointSlice controller's default maximum per slice
TARGET_CHANGE_S = 1.0
TARGET_FAILED = 0

progress = functools.partial(report.progress, "cluster_endpoints")


def fake_endpoints(count: int) -> dict[str, list[str]]:
    """`count` addresses over the region's pools (fake: Envoy gets no traffic for them here)."""
    out: dict[str, list[str]] = {p: [] for p in POOLS}
    for i in range(count):
        out[POOLS[i % len(POOLS)]].append(f"10.{10 + i // 250}.{i % 250}.1")
    return out


def slices(pools: dict[str, list[str]]) -> list[dict[str, Any]]:
    out = []
    for pool, addrs in pools.items():
        for k in range(0, len(addrs), SLICE_SIZE):
            out.append(endpoint_slice(f"fairshare-pool-{pool}-{k // SLICE_SIZE}", REGION, pool,
                                      [(a, "ready", f"{pool}-{i + k}") for i, a in enumerate(addrs[k:k + SLICE_SIZE])],
                                      8080))
    return out


def directory(pools: dict[str, list[str]]) -> EndpointDirectory:
    return EndpointDirectory({
        (REGION, p): tuple(sorted(Endpoint(a, 8080, None, f"{p}-{i}") for i, a in enumerate(addrs)))
        for p, addrs in pools.items()})


class Gateway:
    """One Envoy for the region on an xDS server we hold, and a way to see which endpoints it has applied."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = SnapshotStore()
        self.xds = XdsServer(self.store, "127.0.0.1", 0)
        self.envoy: EnvoyProcess | None = None

    async def start(self) -> None:
        await self.xds.start()

    def start_envoy(self) -> None:
        boot = bootstrap("bench-gateway", REGION, "127.0.0.1", self.xds.bound_port, 0, delta=True,
                         stats_matcher=naming.tenant_cluster_stats_off())
        self.envoy = EnvoyProcess(boot, self.root / "envoy", name="bench", concurrency=2, log_level="warning")
        self.envoy.start()

    def probed_hosts(self) -> set[str]:
        """The probed tenant cluster's hosts as Envoy load-balances over them (admin /clusters, filtered)."""
        assert self.envoy is not None
        query = urllib.parse.urlencode({"format": "json", "filter": f"^{PROBED_CLUSTER}$"})
        data = json.loads(self.envoy.admin_get(f"/clusters?{query}", timeout=30))
        return {h["address"]["socket_address"]["address"]
                for c in data.get("cluster_statuses", []) if c["name"] == PROBED_CLUSTER
                for h in c.get("host_statuses", [])}

    def version(self) -> str | None:
        published = self.store.published(REGION)
        return None if published is None else published.snapshot.version

    async def until_host(self, address: str, present: bool, t0: float, before: str | None,
                         timeout: float = 60) -> dict[str, float | bool]:
        """Seconds from t0 until the control plane published a new snapshot, until Envoy acknowledged it,
        and until Envoy's admin API shows the change. The admin API is asked only after the ACK: at
        10,000 clusters each /clusters call takes Envoy's main thread, the one applying the update."""
        while (version := self.version()) == before:
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError("the control plane published nothing")
            await asyncio.sleep(0.002)
        published_s = time.perf_counter() - t0
        assert version is not None
        await self.store.wait_applied(REGION, version, timeout=timeout)
        acked_s = time.perf_counter() - t0
        while (address in await asyncio.to_thread(self.probed_hosts)) != present:
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"Envoy never {'got' if present else 'dropped'} {address}")
            await asyncio.sleep(0.01)
        return {"added": present, "published_s": published_s, "acked_s": acked_s,
                "seen_s": time.perf_counter() - t0}

    async def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        await self.xds.stop(0)


async def change_to_envoy(tenants: int, endpoints: int, changes: int, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    config_dir = root / "config"
    progress(f"(a) writing {tenants} tenants")
    write_config(config_dir, tenants, ports=(free_port(), free_port()))
    pools = fake_endpoints(endpoints)
    key = SigningKey.load_or_create(root / "state")
    # The example config's upstream mutual TLS, as `fairshare run` serves it: a local CA's SDS files.
    compiler = Compiler(upstream_tls_dir=str(LocalPki.ensure(root / "state").sds_dir))
    apiserver = StandInApiServer("fairshare").start()
    gw = Gateway(root)
    await gw.start()
    try:
        for s in slices(pools):
            apiserver.apply(s)
        source = KubernetesEndpoints(KubernetesSettings(kubeconfig=apiserver.kubeconfig(root / "kubeconfig")))
        await source.start()
        cp = ControlPlane(config_dir, None, key.jwks(), gw.store, "127.0.0.1", endpoint_source=source,
                          validator=EnvoyValidator(find_envoy()), compiler=compiler)
        progress(f"(a) compiling {tenants} tenants over {endpoints} endpoints, then Envoy applies it")
        t = time.perf_counter()
        if not cp.reload().ok:
            raise RuntimeError(cp.last.error if cp.last else "reload failed")
        gw.start_envoy()
        assert cp.compiled is not None
        await gw.store.wait_applied(REGION, gw.store.get(REGION).version, timeout=300)  # type: ignore[union-attr]
        assert gw.envoy is not None
        await asyncio.to_thread(gw.envoy.wait_ready, 60)
        progress(f"(a) first apply done in {time.perf_counter() - t:.1f}s")
        stop = asyncio.Event()
        watcher = asyncio.create_task(cp.watch(stop))

        # The change: one replica more in the probed pool (a MODIFIED slice), then the same one gone.
        probed_slice = f"fairshare-pool-{PROBED_POOL}-0"
        base = pools[PROBED_POOL][:SLICE_SIZE]
        k8s: list[dict[str, float]] = []
        for i in range(changes):
            new = f"10.250.0.{i + 1}"
            for present in (True, False):
                addrs = [*base, new] if present else base
                before, t0 = gw.version(), time.perf_counter()
                apiserver.apply(endpoint_slice(probed_slice, REGION, PROBED_POOL,
                                               [(a, "ready", f"p{j}") for j, a in enumerate(addrs)], 8080))
                k8s.append(await gw.until_host(new, present, t0, before))
            progress(f"(a) kubernetes change {i + 1}/{changes}: in Envoy after {k8s[-2]['seen_s']:.3f}s (add), "
                     f"{k8s[-1]['seen_s']:.3f}s (remove); published after {k8s[-1]['published_s']:.3f}s, "
                     f"acked after {k8s[-1]['acked_s']:.3f}s")
        stop.set()
        watcher.cancel()
        await source.close()

        # Baseline: the endpoints file, edited, published by a full reload (load, compile, validate, push).
        progress("(a) baseline: the same changes through an edited endpoints file and a full reload")
        endpoints_file = root / "endpoints.yaml"
        directory(pools).dump(endpoints_file)
        static = StaticEndpoints(endpoints_file)
        full = ControlPlane(config_dir, endpoints_file, key.jwks(), gw.store, "127.0.0.1", endpoint_source=static,
                            validator=EnvoyValidator(find_envoy()), tenant_files=cp.tenant_files,
                            compiler=compiler)
        if not full.reload().ok:
            raise RuntimeError(full.last.error if full.last else "reload failed")
        reload_: list[dict[str, float]] = []
        for i in range(changes):
            new = f"10.251.0.{i + 1}"
            for present in (True, False):
                edited = {p: list(a) for p, a in pools.items()}
                if present:
                    edited[PROBED_POOL].append(new)
                before, t0 = gw.version(), time.perf_counter()
                directory(edited).dump(endpoints_file)
                # What the config watch ran on a file change: the whole reload, off the event loop.
                full._apply(await asyncio.to_thread(full._build))
                if full.last is None or not full.last.ok:
                    raise RuntimeError(full.last.error if full.last else "reload failed")
                reload_.append(await gw.until_host(new, present, t0, before))
            progress(f"(a) full reload {i + 1}/{changes}: in Envoy after {reload_[-2]['seen_s']:.3f}s (add), "
                     f"{reload_[-1]['seen_s']:.3f}s (remove); published after {reload_[-1]['published_s']:.3f}s, "
                     f"acked after {reload_[-1]['acked_s']:.3f}s")
        k8s_med = statistics.median(float(r["seen_s"]) for r in k8s)
        full_med = statistics.median(float(r["seen_s"]) for r in reload_)

        def summary(runs: list[dict[str, float | bool]]) -> dict[str, Any]:
            return {"median_s": statistics.median(float(r["seen_s"]) for r in runs),
                    "max_s": max(float(r["seen_s"]) for r in runs),
                    "published_median_s": statistics.median(float(r["published_s"]) for r in runs),
                    "acked_median_s": statistics.median(float(r["acked_s"]) for r in runs), "runs": runs}
        return {
            "tenants": tenants, "endpoints": endpoints, "changes": len(k8s),
            "kubernetes": summary(k8s), "full_reload_baseline": summary(reload_),
            "speedup": full_med / k8s_med if k8s_med else float("inf"),
            "target_s": TARGET_CHANGE_S, "met": max(float(r["seen_s"]) for r in k8s) < TARGET_CHANGE_S,
        }
    finally:
        await gw.stop()
        apiserver.close()
        shutil.rmtree(config_dir, ignore_errors=True)


def rolling_restart(rolls: int, root: Path) -> dict[str, Any]:
    progress("(b) starting a pool of 2 real runtimes, Envoy and a control plane on the stand-in API")
    pool = KubePool(root / "pool").start()
    try:
        load = pool.under_load(concurrency=4)
        took = []
        for i in range(rolls):
            t = time.perf_counter()
            pool.roll()
            took.append(time.perf_counter() - t)
            progress(f"(b) rolling restart {i + 1}/{rolls} done in {took[-1]:.1f}s; "
                     f"{len(load.results)} requests so far, {len(load.failures())} failed")
        results = load.end()
        failed = load.failures()
        served = {r.replica for r in served_by(pool.platform.served_by, results)}
        return {"rolls": rolls, "requests": len(results), "failed": len(failed), "failures": failed[:20],
                "roll_s": took, "replicas_served": len(served),
                "target_failed": TARGET_FAILED, "met": len(failed) <= TARGET_FAILED}
    finally:
        pool.stop()


def markdown(res: dict[str, Any]) -> str:
    b = res["rolling_restart"]
    rows = []
    for a in res["change_to_envoy"]:
        k, f = a["kubernetes"], a["full_reload_baseline"]
        rows += [
            [a["tenants"], "EndpointSlice watch", f"{k['published_median_s']:.3f} s", f"{k['acked_median_s']:.3f} s",
             f"{k['median_s']:.3f} s", f"{k['max_s']:.3f} s",
             f"< {TARGET_CHANGE_S:.0f} s: " + ("met" if a["met"] else "missed")],
            [a["tenants"], "baseline: file edit + full reload", f"{f['published_median_s']:.3f} s",
             f"{f['acked_median_s']:.3f} s", f"{f['median_s']:.3f} s", f"{f['max_s']:.3f} s",
             f"watch {a['speedup']:.1f}x faster"],
        ]
    first = res["change_to_envoy"][0]
    return "\n".join([
        "# Endpoints from Kubernetes", "",
        f"## (a) An endpoint change until Envoy uses it ({first['endpoints']} endpoints; one replica added, then "
        f"removed, {first['changes'] // 2} times; medians)", "",
        markdown_table(["tenants", "path", "published", "Envoy ACK", "in Envoy's /clusters", "max", "target"], rows),
        "",
        "From the slice written to the stand-in API server: until the control plane published a new snapshot, "
        "until Envoy acknowledged it, and until Envoy's admin /clusters shows the probed tenant cluster's hosts "
        "changed. The baseline publishes the same change the way it went before the endpoint source: the "
        "endpoints file edited, then a full reload (load, compile, Envoy validation, push; the config watch's "
        "50 ms debounce is not counted).", "",
        f"## (b) A rolling restart of a pool under load ({b['rolls']} restarts of 2 replicas, surge 1)", "",
        markdown_table(["requests", "failed", "target", ""],
                       [[b["requests"], b["failed"], TARGET_FAILED, "met" if b["met"] else "missed"]]), "",
        f"Environment: {res['environment']}",
    ])


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-endpoints-"))
    try:
        a = [await change_to_envoy(n, args.endpoints, args.changes, root / f"t{n}") for n in args.tenants]
        b = await asyncio.to_thread(rolling_restart, args.rolls, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"change_to_envoy": a, "rolling_restart": b, "environment": environment()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tenants", type=int, nargs="+", default=[1_000, 10_000])
    p.add_argument("--endpoints", type=int, default=200)
    p.add_argument("--changes", type=int, default=3, help="replicas added then removed, each timed")
    p.add_argument("--rolls", type=int, default=2, help="rolling restarts under load")
    args = p.parse_args()
    res = asyncio.run(main_async(args))
    path = write_results("cluster_endpoints", res, markdown(res))
    progress(f"wrote {path}")
    print(markdown(res))


if __name__ == "__main__":
    main()
