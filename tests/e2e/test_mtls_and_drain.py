"""Through the local platform (mutual TLS on by default): a runtime refuses anyone without the gateway's
certificate, the gateway keeps serving while the runtimes' and its own certificates rotate, and a
gateway that is scaled down drains without failing a request."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509

from bench.loadgen import Target, in_background, infer_body
from inference_images.runtime.tls import DIR_CERT, DIR_KEY
from tests.e2e.conftest import RunningPlatform, eventually
from xds_server.local.certs import LocalPki

pytestmark = pytest.mark.e2e
US = "us-east-1"


def pki(running: RunningPlatform) -> LocalPki:
    assert running.platform.pki is not None, "fairshare run turns upstream mTLS on by default"
    return running.platform.pki


def classifier_replica(running: RunningPlatform) -> int:
    return next(r.port for r in running.platform.replicas if r.region == US and r.pool == "cpu-general")


def direct(port: int, ctx: ssl.SSLContext | None) -> int:
    """A request straight to a runtime, as any pod in the cluster could send one."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx) if ctx
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        conn.request("POST", "/v2/models/classifier/infer", body=infer_body(["x"]),
                     headers={"x-fairshare-tenant": "acme", "x-fairshare-region": US,
                              "content-type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def context(ca: Path, client: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    if client is not None:
        ctx.load_cert_chain(client / DIR_CERT, client / DIR_KEY)
    return ctx


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def served_serial(port: int, ca: Path, client: Path) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context(ca, client).wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def test_a_runtime_refuses_requests_without_the_gateways_certificate(running: RunningPlatform) -> None:
    port, tls = classifier_replica(running), pki(running)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        direct(port, None)  # plaintext, headers claiming a tenant
    with pytest.raises((ssl.SSLError, ConnectionError)):
        direct(port, context(tls.ca_cert, None))  # TLS, but no client certificate
    # The gateway's own certificate is what gets through (here from the test: it stands in for Envoy).
    assert direct(port, context(tls.ca_cert, tls.gateway_dir)) == 200


def envoy_client_serial(running: RunningPlatform) -> set[int]:
    """Serial numbers of the client certificates the region's Envoy holds (admin /certs)."""
    certs = running.platform.envoys[US].admin_json("/certs")["certificates"]
    return {int(c["serial_number"], 16) for entry in certs for c in entry.get("cert_chain", [])}


def test_gateway_keeps_serving_across_certificate_rotation(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    unthrottled("globex", exempt=True)
    tls = pki(running)
    port = classifier_replica(running)
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token("globex"), infer_body(["x"]))
    with in_background(target, requests=40, concurrency=4) as results:
        assert eventually(lambda: len(results) > 0, timeout=30)
        tls.rotate_runtime()
        assert eventually(lambda: served_serial(port, tls.ca_cert, tls.gateway_dir) == serial(
            tls.runtime_dir / DIR_CERT), timeout=30), "the runtime never served its rotated certificate"
        # The gateway's client certificate too: Envoy picks it up from its watched directory (file SDS).
        tls.issue(tls.gateway_dir, "gateway.fairshare.internal", client=True)
        rotated = serial(tls.gateway_dir / DIR_CERT)
        assert eventually(lambda: rotated in envoy_client_serial(running), timeout=30), envoy_client_serial(running)
        served = len(results)
        assert eventually(lambda: len(results) >= served + 40, timeout=30)
    assert results and all(r.ok for r in results), Counter((r.status, r.error) for r in results if not r.ok)


def test_a_gateway_scaled_down_with_drain_fails_no_request(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    """Two gateways on one port (SO_REUSEPORT: the kernel spreads connections as a load balancer would);
    one is drained and stopped under load, as a pod's preStop hook and SIGTERM do."""
    unthrottled("globex", exempt=True)
    second = running.platform.start_envoy(US, 1)
    key = f"{US}#2"
    target = Target(running.url(US, "/v2/models/classifier/infer"), running.token("globex"), infer_body(["x"]))

    def served_by_second() -> int:
        stats = second.admin_get("/stats?filter=^http\\.gateway\\.downstream_rq_completed$")
        return int(stats.split(": ", 1)[1]) if ": " in stats else 0

    try:
        with in_background(target, requests=40, concurrency=8) as results:
            # The drained gateway must have carried part of the load, or nothing was tested.
            assert eventually(lambda: served_by_second() > 0, timeout=30)
            running.platform.stop_envoy(key, drain=True)
            assert not second.running
            served = len(results)
            assert eventually(lambda: len(results) >= served + 40, timeout=30)
    finally:
        running.platform.stop_envoy(key)
    assert results and all(r.ok for r in results), Counter((r.status, r.error) for r in results if not r.ok)
