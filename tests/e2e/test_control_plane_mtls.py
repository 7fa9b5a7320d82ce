"""Through the local platform (mutual TLS on by default, platform.gateway.upstream_tls.control_plane):
the control plane's xDS and rate-limit ports refuse anyone without the gateway's certificate, Envoy gets
its config and its rate-limit decisions over mutual TLS, and the control plane's certificate rotates under
load without a failed request or a restart."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from bench.loadgen import Target, in_background, infer_body
from tests.controlplane.test_grpc_mtls import channel, credentials, served_serial, xds_call
from tests.e2e.conftest import RunningPlatform, eventually
from tests.e2e.test_mtls_and_drain import serial
from xds_server.compiler import naming
from xds_server.envoy.process import EnvoyProcess
from xds_server.local.certs import LocalPki

pytestmark = pytest.mark.e2e
US = "us-east-1"


def pki(running: RunningPlatform) -> LocalPki:
    assert running.platform.pki is not None, "fairshare run turns mutual TLS on by default"
    return running.platform.pki


def rls_code(port: int, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    async def go() -> grpc.StatusCode:
        ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}") if creds is None else channel(port, creds)
        async with ch:
            try:
                await rls_pb2_grpc.RateLimitServiceStub(ch).ShouldRateLimit(
                    rls_pb2.RateLimitRequest(domain="fairshare"), timeout=10)
            except grpc.aio.AioRpcError as err:
                return err.code()
            return grpc.StatusCode.OK
    return asyncio.run(go())


def xds_code(port: int, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    async def go() -> grpc.StatusCode:
        try:
            await asyncio.wait_for(xds_call(port, creds), 10)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK
    return asyncio.run(go())


def test_the_control_plane_refuses_clients_without_the_gateways_certificate(running: RunningPlatform) -> None:
    tls, platform = pki(running), running.platform
    xds, rls = platform.opts.xds_port, platform.ratelimit_port
    assert rls_code(rls, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
    no_cert = credentials(tls.ca_cert, None)
    assert rls_code(rls, no_cert) == grpc.StatusCode.UNAVAILABLE  # TLS, no client certificate
    assert xds_code(xds, no_cert) == grpc.StatusCode.UNAVAILABLE
    # A runtime's certificate is the platform CA's too, but it is not the gateway.
    runtime = credentials(tls.ca_cert, tls.runtime_dir)
    assert rls_code(rls, runtime) in {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE}
    assert rls_code(rls, credentials(tls.ca_cert, tls.gateway_dir)) == grpc.StatusCode.OK


def ratelimit_handshakes(envoy: EnvoyProcess) -> int:
    stats = envoy.admin_get(f"/stats?filter=^cluster\\.{naming.RATELIMIT_CLUSTER}\\.ssl\\.handshake$")
    return int(stats.split(": ", 1)[1]) if ": " in stats else 0


def test_control_plane_certificate_rotation_fails_no_request(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    """Rotated under load: the gateway's xDS stream and rate-limit connections stay up on the old pair,
    and a gateway that connects afterwards gets config and decisions over the new one."""
    tls, platform = pki(running), running.platform
    unthrottled("globex")  # shadow: every request still asks the rate-limit service, nothing is refused
    node = platform.status()["xds"]["nodes"][f"gateway-{US}"]
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token("globex"), infer_body(["x"]))
    key = f"{US}#2"
    # The second gateway is stopped once the load has stopped: on this machine both gateways share one port
    # (SO_REUSEPORT), and closing one's socket resets the connections still in its accept queue, which a pod
    # behind its own address never sees.
    try:
        with in_background(target, requests=20, concurrency=4) as results:
            assert eventually(lambda: len(results) >= 20, timeout=30)
            before = serial(tls.controlplane_dir / "tls.crt")
            tls.rotate_controlplane()
            after = serial(tls.controlplane_dir / "tls.crt")
            assert before != after
            # The running control plane presents the new certificate to the next handshake, on both ports.
            for port in (platform.opts.xds_port, platform.ratelimit_port):
                assert eventually(lambda p=port: served_serial(p, tls) == after, timeout=10)  # type: ignore[misc]
            second = platform.start_envoy(US, 1)  # its xDS stream: a handshake against the new certificate
            # Its rate-limit checks go over mutual TLS too (the load reaches it through the shared port).
            assert eventually(lambda: ratelimit_handshakes(second) > 0, timeout=30)
            served = len(results)
            assert eventually(lambda: len(results) >= served + 20, timeout=30)
    finally:
        platform.stop_envoy(key, drain=True)
    assert results and all(r.ok for r in results), Counter((r.status, r.error) for r in results if not r.ok)
    # The first gateway never lost its stream.
    now = platform.status()["xds"]["nodes"][f"gateway-{US}"]
    assert now["connected"] and now["stream_id"] == node["stream_id"]
