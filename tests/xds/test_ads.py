"""ADS against the real Envoy, for both protocols: delivery per region, updates, NACKs, restarts.

Each scenario runs the xDS server on the test's own event loop; blocking Envoy calls go through
asyncio.to_thread so the server keeps answering while a test waits on Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, duration_pb2
from google.rpc import status_pb2

from xds_server.envoy import EnvoyError, EnvoyProcess, bootstrap, find_envoy
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, Snapshot
from xds_server.xds.delta import DeltaStream
from xds_server.xds.server import XdsServer
from xds_server.xds.sotw import SotwStream
from xds_server.xds.store import DELTA, SOTW, ConfigRejected, SnapshotStore

pytestmark = pytest.mark.timeout(60)
PROTOCOLS = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_ADS = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
)


# -- snapshot building -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ports:
    """Listener ports of one region's gateway: plain RDS, and SRDS keyed by the x-tenant header."""

    def __init__(self) -> None:
        self.http = free_port()
        self.scoped = free_port()


def _any(msg: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)  # type: ignore[arg-type]
    return packed


def _address(port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port))


def _listener(name: str, port: int, manager: hcm.HttpConnectionManager) -> listener_pb2.Listener:
    manager.http_filters.append(
        hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))
    )
    return listener_pb2.Listener(
        name=name,
        address=_address(port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_any(manager)
                    )
                ]
            )
        ],
    )


def _route_config(name: str, body: str, bad_regex: bool = False) -> route_pb2.RouteConfiguration:
    routes = [
        route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(
                status=200, body=base_pb2.DataSource(inline_string=body)
            ),
        )
    ]
    if bad_regex:
        # Valid protobuf, but RE2 can't compile it: Envoy must NACK the RouteConfiguration.
        routes.insert(0, route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(safe_regex={"regex": "/(["}),
            direct_response=route_components_pb2.DirectResponseAction(status=500),
        ))
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[route_components_pb2.VirtualHost(name="all", domains=["*"], routes=routes)],
    )


def _eds_cluster(name: str, service: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=1),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ADS, service_name=service),
    )


def _assignment(service: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=service,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=_address(port))
                    )
                ]
            )
        ],
    )


def make_snapshot(
    version: str,
    ports: Ports,
    body: str,
    *,
    tenants: tuple[str, ...] = ("a",),
    endpoint_port: int = 9001,
    bad_regex: bool = False,
    clusters: tuple[str, ...] = ("backend", "backend-canary"),
) -> Snapshot:
    """LDS (two listeners) + SRDS (a scope per tenant) + RDS + CDS + EDS (shared by two clusters)."""
    plain = hcm.HttpConnectionManager(
        stat_prefix="plain", rds=hcm.Rds(config_source=_ADS, route_config_name="main")
    )
    header = hcm.ScopedRoutes.ScopeKeyBuilder.FragmentBuilder.HeaderValueExtractor(name="x-tenant", index=0)
    scoped = hcm.HttpConnectionManager(
        stat_prefix="scoped",
        scoped_routes=hcm.ScopedRoutes(
            name="tenants",
            scope_key_builder=hcm.ScopedRoutes.ScopeKeyBuilder(
                fragments=[hcm.ScopedRoutes.ScopeKeyBuilder.FragmentBuilder(header_value_extractor=header)]
            ),
            rds_config_source=_ADS,
            scoped_rds=hcm.ScopedRds(scoped_rds_config_source=_ADS),
        ),
    )
    resources = [
        *(Resource.pack(name, _eds_cluster(name, "model-v1")) for name in clusters),
        Resource.pack("model-v1", _assignment("model-v1", endpoint_port)),
        Resource.pack("plain", _listener("plain", ports.http, plain)),
        Resource.pack("scoped", _listener("scoped", ports.scoped, scoped)),
        Resource.pack("main", _route_config("main", body, bad_regex)),
    ]
    for tenant in tenants:
        scope = scoped_route_pb2.ScopedRouteConfiguration(
            name=f"tenant-{tenant}",
            route_configuration_name=f"routes-{tenant}",
            key=scoped_route_pb2.ScopedRouteConfiguration.Key(
                fragments=[scoped_route_pb2.ScopedRouteConfiguration.Key.Fragment(string_key=tenant)]
            ),
        )
        resources.append(Resource.pack(scope.name, scope))
        resources.append(Resource.pack(f"routes-{tenant}", _route_config(f"routes-{tenant}", f"{body} {tenant}")))
    return Snapshot.build(version, resources)


# -- running things ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def xds_server(store: SnapshotStore, port: int = 0) -> AsyncIterator[XdsServer]:
    server = XdsServer(store, "127.0.0.1", port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def envoy(
    work: Path, node_id: str, region: str | None, xds_port: int, delta: bool, ready: bool = True
) -> AsyncIterator[EnvoyProcess]:
    config = bootstrap(node_id, region or "", "127.0.0.1", xds_port, 0, delta=delta)
    if region is None:
        del config["node"]["metadata"]
    proc = EnvoyProcess(config, work, log_level=os.environ.get("XDS_TEST_ENVOY_LOG", "warning")).start()
    try:
        if ready:
            await asyncio.to_thread(proc.wait_ready, 15)
        else:
            await asyncio.to_thread(proc.wait_admin, 10)
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def _get(port: int, tenant: str | None = None) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"x-tenant": tenant} if tenant else {})
    try:
        with _NO_PROXY.open(req, timeout=2) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"


async def get(port: int, tenant: str | None = None) -> str:
    return await asyncio.to_thread(_get, port, tenant)


async def ads_backoff(proc: EnvoyProcess) -> dict[str, str]:
    """The ADS stream's reconnect backoff in the bootstrap Envoy is running (where Envoy reads it for xDS:
    envoy_grpc.retry_policy; a GrpcService-level retry_policy is ignored for xDS streams)."""
    dump = await asyncio.to_thread(proc.config_dump)
    boot = next(c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump"))["bootstrap"]
    [service] = boot["dynamic_resources"]["ads_config"]["grpc_services"]
    return dict(service["envoy_grpc"].get("retry_policy", {}).get("retry_back_off", {}))


async def endpoint_ports(proc: EnvoyProcess) -> set[int]:
    dump = await asyncio.to_thread(proc.config_dump, "dynamic_endpoint_configs", True)
    return {
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for cfg in dump["configs"]
        for group in cfg["endpoint_config"].get("endpoints", [])
        for lb in group.get("lb_endpoints", [])
    }


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` (plain or async) until it holds."""
    deadline = time.monotonic() + timeout
    while not (await result if inspect.isawaitable(result := predicate()) else result):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- scenarios against the real Envoy ----------------------------------------------------------


@PROTOCOLS
def test_each_region_gets_its_own_snapshot_and_updates(tmp_path: Path, delta: bool) -> None:
    async def scenario() -> None:
        store = SnapshotStore()
        eu, us = Ports(), Ports()
        store.set_snapshot("eu", make_snapshot("eu-1", eu, "eu v1", endpoint_port=9001))
        store.set_snapshot("us", make_snapshot("us-1", us, "us v1", endpoint_port=9101))
        async with (
            xds_server(store) as server,
            envoy(tmp_path, "gw-eu", "eu", server.bound_port, delta) as gw_eu,
            envoy(tmp_path, "gw-us", "us", server.bound_port, delta) as gw_us,
        ):
            assert await store.wait_applied("eu", "eu-1", timeout=10) == ["gw-eu"]
            assert await store.wait_applied("us", "us-1", timeout=10) == ["gw-us"]
            assert await get(eu.http) == "eu v1"
            assert await get(eu.scoped, "a") == "eu v1 a"
            assert await get(us.http) == "us v1"
            assert await get(us.scoped, "a") == "us v1 a"
            assert await endpoint_ports(gw_eu) == {9001}
            assert await endpoint_ports(gw_us) == {9101}

            # New route content, a new scope (new SRDS + RDS subscription) and moved endpoints.
            started = time.monotonic()
            store.set_snapshot("eu", make_snapshot("eu-2", eu, "eu v2", tenants=("a", "b"), endpoint_port=9002))
            await store.wait_applied("eu", "eu-2", timeout=10)
            logging.getLogger(__name__).info("eu-2 applied in %.3fs", time.monotonic() - started)
            assert await get(eu.http) == "eu v2"
            assert await get(eu.scoped, "b") == "eu v2 b"
            assert await get(eu.scoped, "zz") == "HTTP 404"
            assert await endpoint_ports(gw_eu) == {9002}
            assert await get(us.http) == "us v1", "another region's update leaked"

            status = json.loads(json.dumps(store.status()))
            assert status["regions"]["eu"]["version"] == "eu-2"
            assert status["regions"]["eu"]["nodes_applied"] == 1
            node = status["nodes"]["gw-eu"]
            assert node["connected"] and node["applied_version"] == "eu-2"
            assert node["protocol"] == (DELTA if delta else SOTW)
            assert node["last_nack"] is None
            assert {"Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration",
                    "ScopedRouteConfiguration"} <= set(node["acked"])

    asyncio.run(scenario())


@PROTOCOLS
def test_new_cluster_sharing_known_endpoints_becomes_active(tmp_path: Path, delta: bool) -> None:
    """A tenant's new cluster reads an EDS resource Envoy already holds: Envoy subscribes to nothing new,
    so the server must resend those endpoints or the cluster warms forever (also after a reconnect)."""

    async def has_active(proc: EnvoyProcess, cluster: str) -> bool:
        dump = await asyncio.to_thread(proc.config_dump, "dynamic_active_clusters")
        return cluster in {c["cluster"]["name"] for c in dump["configs"]}

    async def scenario() -> None:
        store = SnapshotStore()
        ports = Ports()
        store.set_snapshot("eu", make_snapshot("v1", ports, "v1"))
        port = free_port()
        async with xds_server(store, port) as server, envoy(tmp_path, "gw", "eu", port, delta) as gw:
            await store.wait_applied("eu", "v1", timeout=10)
            store.set_snapshot("eu", make_snapshot("v2", ports, "v2", clusters=("backend", "backend-canary", "new")))
            await store.wait_applied("eu", "v2", timeout=10)
            await wait_until(lambda: has_active(gw, "new"), what="cluster 'new' active")
            # The control plane restarts with yet another cluster on the same endpoints.
            await server.stop(0)
            store.set_snapshot("eu", make_snapshot("v3", ports, "v3", clusters=("backend", "new", "newer")))
            async with xds_server(store, port):
                await store.wait_applied("eu", "v3", timeout=15)
                await wait_until(lambda: has_active(gw, "newer"), what="cluster 'newer' active")

    asyncio.run(scenario())


@PROTOCOLS
def test_rejected_snapshot_is_nacked_and_last_good_keeps_serving(
    tmp_path: Path, delta: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        store = SnapshotStore()
        ports = Ports()
        store.set_snapshot("eu", make_snapshot("v1", ports, "v1"))
        async with xds_server(store) as server, envoy(tmp_path, "gw", "eu", server.bound_port, delta):
            await store.wait_applied("gw", "v1", timeout=10)

            store.set_snapshot("eu", make_snapshot("v2", ports, "v2", bad_regex=True))
            with pytest.raises(ConfigRejected) as rejected:
                await store.wait_applied("eu", "v2", timeout=10)
            assert rejected.value.node_id == "gw"

            nack = store.status()["nodes"]["gw"]["last_nack"]
            assert nack["type"] == "RouteConfiguration" and nack["version"] == "v2"
            assert "missing ]" in nack["message"], nack["message"]  # RE2 says why
            assert await get(ports.http) == "v1", "Envoy should keep the last good route"
            # A NACK is not an atomic rejection: Envoy may already have applied the valid resources
            # of that response (sotw: always seen; delta: depends on Envoy's hash-map order).
            assert await get(ports.scoped, "a") in {"v1 a", "v2 a"}
            assert store.status()["nodes"]["gw"]["applied_version"] == "v1"

            # No resend loop: the server waits for new content instead of repeating the bad one.
            await asyncio.sleep(0.5)
            assert store.status()["nodes"]["gw"]["nack_count"] == 1

            store.set_snapshot("eu", make_snapshot("v3", ports, "v3"))
            await store.wait_applied("eu", "v3", timeout=10)
            assert await get(ports.http) == "v3"

        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "NACK" in r.getMessage()]
        assert len(warnings) == 1 and "gw" in warnings[0].getMessage()
        assert "RouteConfiguration version v2 rejected" in warnings[0].getMessage()

    asyncio.run(scenario())


@PROTOCOLS
def test_restarted_envoy_gets_current_snapshot(tmp_path: Path, delta: bool) -> None:
    async def scenario() -> None:
        store = SnapshotStore()
        ports = Ports()
        store.set_snapshot("eu", make_snapshot("v1", ports, "v1"))
        async with xds_server(store) as server:
            async with envoy(tmp_path, "gw", "eu", server.bound_port, delta):
                await store.wait_applied("gw", "v1", timeout=10)
                first_stream = store.status()["nodes"]["gw"]["stream_id"]
            await wait_until(lambda: not store.status()["nodes"]["gw"]["connected"], what="disconnect")

            # From another thread, as a file watcher or CLI worker would.
            await asyncio.to_thread(store.set_snapshot, "eu", make_snapshot("v2", ports, "v2", tenants=("a", "b")))
            async with envoy(tmp_path, "gw", "eu", server.bound_port, delta):
                await store.wait_applied("gw", "v2", timeout=10)
                assert await get(ports.http) == "v2"
                assert await get(ports.scoped, "b") == "v2 b"
                node = store.status()["nodes"]["gw"]
                assert node["connected"] and node["stream_id"] > first_stream

    asyncio.run(scenario())


@PROTOCOLS
def test_envoy_survives_xds_server_restart_and_resyncs(tmp_path: Path, delta: bool) -> None:
    async def scenario() -> None:
        ports = Ports()
        store = SnapshotStore()
        store.set_snapshot("eu", make_snapshot("v1", ports, "v1"))
        server = XdsServer(store, "127.0.0.1", 0)
        await server.start()
        xds_port = server.bound_port
        try:
            async with envoy(tmp_path, "gw", "eu", xds_port, delta) as gw:
                await store.wait_applied("gw", "v1", timeout=10)
                # How soon Envoy comes back is its reconnect backoff (Envoy's default grows to 30 s), so
                # the test checks the backoff Envoy itself loaded rather than timing a reconnect.
                assert await ads_backoff(gw) == {"base_interval": "0.100s", "max_interval": "2s"}
                await server.stop(0)

                await asyncio.sleep(0.3)  # let Envoy notice and start retrying
                assert gw.running
                assert await get(ports.http) == "v1", "Envoy dropped config when the xDS server went away"

                # A fresh process: new store, newer snapshot, same address.
                store = SnapshotStore()
                store.set_snapshot("eu", make_snapshot("v2", ports, "v2", endpoint_port=9002))
                server = XdsServer(store, "127.0.0.1", xds_port)
                await server.start()
                await store.wait_applied("gw", "v2", timeout=10)  # a hang guard, not a target
                assert await get(ports.http) == "v2"
                assert await endpoint_ports(gw) == {9002}
        finally:
            await server.stop(0)

    asyncio.run(scenario())


@PROTOCOLS
def test_node_without_known_region_waits_for_one(
    tmp_path: Path, delta: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        store = SnapshotStore()
        ports = Ports()
        store.set_snapshot("eu", make_snapshot("eu-1", ports, "eu"))
        async with (
            xds_server(store) as server,
            envoy(tmp_path, "gw-mars", "mars", server.bound_port, delta, ready=False) as mars,
            envoy(tmp_path, "gw-nowhere", None, server.bound_port, delta, ready=False),
        ):
            await wait_until(lambda: {"gw-mars", "gw-nowhere"} <= set(store.status()["nodes"]), what="nodes")
            status = store.status()["nodes"]
            assert status["gw-mars"]["applied_version"] is None
            assert status["gw-nowhere"]["region"] == ""
            messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("gw-mars" in m and "'mars'" in m and "no snapshot" in m for m in messages), messages
            assert any("gw-nowhere" in m and "region" in m for m in messages), messages

            mars_ports = Ports()
            store.set_snapshot("mars", make_snapshot("mars-1", mars_ports, "mars"))
            await store.wait_applied("mars", "mars-1", timeout=10)
            await asyncio.to_thread(mars.wait_ready, 10)
            assert await get(mars_ports.http) == "mars"
            assert store.status()["nodes"]["gw-nowhere"]["applied_version"] is None

    asyncio.run(scenario())


# -- protocol state machines without Envoy -----------------------------------------------------


def _published(store: SnapshotStore, region: str, snap: Snapshot):  # type: ignore[no-untyped-def]
    store.set_snapshot(region, snap)
    pub = store.published(region)
    assert pub is not None
    return pub


def test_sotw_ignores_stale_nonces_and_does_not_resend_after_nack() -> None:
    store = SnapshotStore()
    ports = Ports()
    node = store.open_stream("n", "eu", SOTW)
    stream = SotwStream(store, node)
    stream.on_snapshot(_published(store, "eu", make_snapshot("v1", ports, "v1")))

    [cds] = stream.on_request(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
    assert cds.version_info == "v1" and len(cds.resources) == 2
    [rds] = stream.on_request(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["main", "nope"]))
    assert [r.type_url for r in rds.resources] == [ROUTE] and len(rds.resources) == 1

    # A new snapshot changes only routes: CDS is not resent.
    [rds2] = stream.on_snapshot(_published(store, "eu", make_snapshot("v2", ports, "v2")))
    assert rds2.type_url == ROUTE and rds2.nonce != rds.nonce
    stale = discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["main"], response_nonce=rds.nonce)
    assert stream.on_request(stale) == []

    nack = discovery_pb2.DiscoveryRequest(
        type_url=ROUTE, resource_names=["main", "nope"], response_nonce=rds2.nonce, version_info="v1",
        error_detail=status_pb2.Status(code=3, message="bad route"),
    )
    assert stream.on_request(nack) == []
    assert node.last_nack is not None and node.last_nack.version == "v2"
    assert node.last_nack.message == "bad route"


def test_delta_honours_initial_versions_and_removes_deleted() -> None:
    store = SnapshotStore()
    ports = Ports()
    node = store.open_stream("n", "eu", DELTA)
    stream = DeltaStream(store, node)
    v1 = make_snapshot("v1", ports, "v1")
    stream.on_snapshot(_published(store, "eu", v1))

    have = {name: res.version for name, res in v1.of_type(LISTENER).items()}
    have["gone"] = "x"
    [lds] = stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER, initial_resource_versions=have))
    assert list(lds.resources) == [] and list(lds.removed_resources) == ["gone"]

    [eds] = stream.on_request(
        discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=["model-v1"])
    )
    assert [r.name for r in eds.resources] == ["model-v1"]
    stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=eds.nonce))
    # Same endpoints in v2: nothing to send for EDS, only the changed routes would go (not subscribed here).
    assert stream.on_snapshot(_published(store, "eu", make_snapshot("v2", ports, "v2"))) == []
    [eds2] = stream.on_snapshot(_published(store, "eu", make_snapshot("v3", ports, "v3", endpoint_port=1)))
    assert [r.name for r in eds2.resources] == ["model-v1"] and eds2.system_version_info == "v3"


def test_bootstrap_is_valid_and_only_knows_the_xds_server(tmp_path: Path) -> None:
    config = bootstrap("gw-1", "eu", "xds.internal", 18000, 0, delta=False,
                       stats_matcher={"inclusion_list": {"patterns": [{"prefix": "cluster."}]}})
    ads = config["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "GRPC" and ads["transport_api_version"] == "V3"
    # Envoy takes the ADS reconnect backoff from envoy_grpc.retry_policy only.
    assert ads["grpc_services"][0]["envoy_grpc"]["retry_policy"]["retry_back_off"]["max_interval"] == "2s"
    assert config["node"]["metadata"] == {"region": "eu"}
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["fairshare_xds"]
    assert "listeners" not in config["static_resources"]
    [monitor] = config["overload_manager"]["resource_monitors"]
    assert monitor["typed_config"]["max_active_downstream_connections"] == 50_000

    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([find_envoy(), "--mode", "validate", "-c", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_that_dies_early_reports_its_log(tmp_path: Path) -> None:
    config = bootstrap("gw-bad", "eu", "127.0.0.1", 1, 0)
    config["static_resources"]["clusters"][0]["connect_timeout"] = "-1s"
    proc = EnvoyProcess(config, tmp_path)
    with proc, pytest.raises(EnvoyError, match=r"exited with code \d+(.|\n)*last \d+ lines"):
        proc.wait_ready(10)
    assert not proc.running
