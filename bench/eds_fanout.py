"""What Envoy spends applying one shared endpoint set read by many tenant clusters (issue 12's EDS target).

N EDS clusters, built as the compiler builds tenant clusters (clusters.tenant_cluster), all read one
ClusterLoadAssignment of M endpoints, as `tenant/<t>/<model>/<region>` clusters read their versions' pool set
`pool/<pool>/<region>` (variant `subsets`: as where a model's versions run on different pools, each cluster
picks its versions' subsets of `model/<model>/<region>`, whose endpoints carry their versions: docs/design/0001).
One variant at a time changes one knob (LB policy, outlier detection,
ignore_health_on_host_removal, update_merge_window, worker count, endpoint count); each variant gets a
fresh Envoy, then the set is changed `--changes` times (one endpoint added, then drained) and timed from
publication: until Envoy's ACK (its main thread has run every cluster's EDS update) and until the probed
cluster's hosts show the change in admin /clusters (the workers have it too).

    python -m bench.eds_fanout [--clusters 10000] [--endpoints 100] [--variants base rr ...]

Writes bench/results/eds_fanout.{json,md}. No compile, no policy, no listeners: Envoy's cost alone.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import duration_pb2

from bench import report
from bench.report import environment, markdown_table, write_results
from xds_server.compiler import Endpoint, clusters, naming
from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.process import EnvoyProcess
from xds_server.snapshot import Resource, Snapshot
from xds_server.xds.server import XdsServer
from xds_server.xds.store import SnapshotStore

REGION = "us-east-1"
EDS = naming.pool_endpoints("gpu-small", REGION)
VERSIONS = ("v1", "v2")  # what each endpoint serves, for the subsets variant
progress = functools.partial(report.progress, "eds_fanout")


def _cluster(i: int, tweak: Callable[[cluster_pb2.Cluster], None]) -> cluster_pb2.Cluster:
    c = clusters.tenant_cluster(naming.tenant_cluster(f"t{i:05d}", "embedder", REGION), EDS, 8)
    tweak(c)
    return c


def _rr(c: cluster_pb2.Cluster) -> None:
    c.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN


def _no_outlier(c: cluster_pb2.Cluster) -> None:
    c.ClearField("outlier_detection")


def _no_ignore_health(c: cluster_pb2.Cluster) -> None:
    c.ignore_health_on_host_removal = False


def _merge0(c: cluster_pb2.Cluster) -> None:
    c.common_lb_config.update_merge_window.CopyFrom(duration_pb2.Duration())


def _subsets(c: cluster_pb2.Cluster) -> None:
    c.lb_subset_config.CopyFrom(clusters.tenant_cluster(c.name, EDS, 8, subsets=True).lb_subset_config)


def _minimal(c: cluster_pb2.Cluster) -> None:
    for t in (_rr, _no_outlier, _no_ignore_health):
        t(c)
    c.ClearField("circuit_breakers")


# name -> (cluster tweak, Envoy workers, endpoints multiplier[, bootstrap cluster_manager settings])
VARIANTS: dict[str, tuple[Any, ...]] = {
    "base": (lambda c: None, 2, 1.0),
    "subsets": (_subsets, 2, 1.0),
    "workers1": (lambda c: None, 1, 1.0),
    "workers8": (lambda c: None, 8, 1.0),
    "rr": (_rr, 2, 1.0),
    "no_outlier": (_no_outlier, 2, 1.0),
    "no_ignore_health": (_no_ignore_health, 2, 1.0),
    "merge0": (_merge0, 2, 1.0),
    "minimal": (_minimal, 2, 1.0),
    "endpoints/10": (lambda c: None, 2, 0.1),
    # Thread-local clusters built on a thread's first use of a cluster, not on every update everywhere.
    "deferred": (lambda c: None, 2, 1.0, {"enable_deferred_cluster_creation": True}),
    "deferred_merge0": (_merge0, 2, 1.0, {"enable_deferred_cluster_creation": True}),
}


def _endpoints(n: int, extra: str | None = None, draining: str | None = None) -> tuple[Endpoint, ...]:
    addrs = [f"10.10.{i // 250}.{i % 250 + 1}" for i in range(n)] + ([extra] if extra else [])
    return tuple(Endpoint(a, 8080, None, a, draining=(a == draining)) for a in addrs)


def _snapshot(version: str, cluster_res: list[Resource], eps: tuple[Endpoint, ...], tagged: bool) -> Snapshot:
    cla = clusters.endpoint_set(EDS, [(e, VERSIONS) for e in eps] if tagged else eps)
    return Snapshot.build(version, [*cluster_res, Resource.pack(EDS, cla)])


def _stats(envoy: EnvoyProcess) -> dict[str, int]:
    want = ("cluster_manager.cluster_updated", "cluster_manager.cluster_updated_via_merge",
            "cluster_manager.update_merge_cancelled", "cluster_manager.update_out_of_merge_window",
            "control_plane.", f"cluster_manager.{'eds'}")
    out: dict[str, int] = {}
    for line in envoy.admin_get("/stats?filter=^(cluster_manager|control_plane)", timeout=30).splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(want) and value.strip().isdigit():
            out[name] = int(value)
    return out


async def run_variant(name: str, n_clusters: int, n_endpoints: int, changes: int, root: Path,
                      envoy_args: tuple[str, ...] = ()) -> dict[str, Any]:
    tweak, workers, mult, *more = VARIANTS[name]
    m = max(1, int(n_endpoints * mult))
    store = SnapshotStore()
    xds = XdsServer(store, "127.0.0.1", 0)
    await xds.start()
    cluster_res = [Resource.pack(c.name, c) for c in (_cluster(i, tweak) for i in range(n_clusters))]
    probed = cluster_res[-1].name
    envoy: EnvoyProcess | None = None
    seq = 0

    async def publish(eps: tuple[Endpoint, ...]) -> tuple[str, float]:
        nonlocal seq
        seq += 1
        version = f"v{seq}"
        t0 = time.perf_counter()
        store.set_snapshot(REGION, _snapshot(version, cluster_res, eps, tagged=tweak is _subsets))
        return version, t0

    def hosts() -> dict[str, str]:
        assert envoy is not None
        q = urllib.parse.urlencode({"format": "json", "filter": f"^{probed}$"})
        data = json.loads(envoy.admin_get(f"/clusters?{q}", timeout=30))
        return {h["address"]["socket_address"]["address"]: h["health_status"].get("eds_health_status", "")
                for c in data.get("cluster_statuses", []) for h in c.get("host_statuses", [])}

    try:
        version, t0 = await publish(_endpoints(m))
        boot = bootstrap(f"fanout-{name}", REGION, "127.0.0.1", xds.bound_port, 0, delta=True,
                         stats_matcher=naming.tenant_cluster_stats_off())
        if more:
            boot.setdefault("cluster_manager", {}).update(more[0])
        envoy = EnvoyProcess(boot, root / name.replace("/", "_"), name="fanout", concurrency=workers,
                             log_level="warning", extra_args=envoy_args)
        envoy.start()
        await store.wait_applied(REGION, version, timeout=600)
        first_s = time.perf_counter() - t0
        await asyncio.to_thread(envoy.wait_ready, 60)
        progress(f"{name}: {n_clusters} clusters x {m} endpoints, {workers} workers: first apply {first_s:.1f}s")
        before = await asyncio.to_thread(_stats, envoy)
        runs: list[dict[str, Any]] = []
        for i in range(changes):
            extra = f"10.250.0.{i + 1}"
            for kind, eps, check in (
                ("add", _endpoints(m, extra), lambda h, e=extra: e in h),  # type: ignore[misc]
                ("drain", _endpoints(m, extra, draining=extra), lambda h, e=extra: h.get(e) == "DRAINING"),  # type: ignore[misc]
                ("remove", _endpoints(m), lambda h, e=extra: e not in h),  # type: ignore[misc]
            ):
                version, t0 = await publish(eps)
                await store.wait_applied(REGION, version, timeout=120)
                acked = time.perf_counter() - t0
                while not check(await asyncio.to_thread(hosts)):
                    await asyncio.sleep(0.01)
                runs.append({"kind": kind, "acked_s": acked, "seen_s": time.perf_counter() - t0})
        after = await asyncio.to_thread(_stats, envoy)
        by_kind = {k: {"acked_median_s": statistics.median(r["acked_s"] for r in runs if r["kind"] == k),
                       "seen_median_s": statistics.median(r["seen_s"] for r in runs if r["kind"] == k)}
                   for k in ("add", "drain", "remove")}
        acked_all = statistics.median(r["acked_s"] for r in runs if r["kind"] != "drain")
        res = {"variant": name, "clusters": n_clusters, "endpoints": m, "workers": workers, "first_apply_s": first_s,
               **{f"{k}_{f}": v for k, d in by_kind.items() for f, v in d.items()},
               "per_cluster_us": acked_all / n_clusters * 1e6,
               "stats_delta": {k: after.get(k, 0) - before.get(k, 0) for k in after
                               if after.get(k, 0) != before.get(k, 0)},
               "runs": runs}
        add = by_kind["add"]
        progress(f"{name}: add ack {add['acked_median_s']:.3f}s seen {add['seen_median_s']:.3f}s; "
                 f"drain ack {by_kind['drain']['acked_median_s']:.3f}s seen {by_kind['drain']['seen_median_s']:.3f}s; "
                 f"{res['per_cluster_us']:.0f} us/cluster; stats {res['stats_delta']}")
        return res
    finally:
        if envoy is not None:
            envoy.stop()
        await xds.stop(0)


def markdown(res: dict[str, Any]) -> str:
    rows = [[r["variant"], r["clusters"], r["endpoints"], r["workers"], f"{r['first_apply_s']:.1f} s",
             f"{r['add_acked_median_s']:.3f} s", f"{r['add_seen_median_s']:.3f} s",
             f"{r['drain_acked_median_s']:.3f} s", f"{r['drain_seen_median_s']:.3f} s",
             f"{r['per_cluster_us']:.0f}"] for r in res["variants"]]
    return "\n".join([
        "# One shared endpoint set, many tenant clusters: Envoy's cost per knob", "",
        markdown_table(["variant", "clusters", "endpoints", "workers", "first apply", "add: ACK", "add: in /clusters",
                        "drain: ACK", "drain: in /clusters", "us per cluster (ACK)"], rows), "",
        "Medians over the changes; from the snapshot's publication. ACK: Envoy's main thread ran every cluster's "
        "EDS update; in /clusters: the probed cluster's hosts show it.", "",
        f"Environment: {res['environment']}",
    ])


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-eds-fanout-"))
    try:
        out = [await run_variant(v, args.clusters, args.endpoints, args.changes, root, tuple(args.envoy_arg))
               for v in args.variants]
        if args.keep_logs:
            for log in root.rglob("*.log"):
                shutil.copy(log, Path(args.keep_logs) / f"{log.parent.name}.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"variants": out, "environment": environment()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=10_000, help="the 10,000-tenant case: one cluster per tenant")
    p.add_argument("--endpoints", type=int, default=100)
    p.add_argument("--changes", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--envoy-arg", action="append", default=[],
                   help="passed to Envoy, e.g. --envoy-arg=--component-log-level --envoy-arg=upstream:debug")
    p.add_argument("--keep-logs", metavar="DIR", help="copy each variant's Envoy log here")
    args = p.parse_args()
    res = asyncio.run(main_async(args))
    path = write_results("eds_fanout", res, markdown(res))
    progress(f"wrote {path}")
    print(markdown(res))


if __name__ == "__main__":
    main()
