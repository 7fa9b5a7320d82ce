"""Mutual TLS on the runtime's data-plane port: only the gateway's certificate is served, certificates
rotate without a restart, and kubelet's probes have a plaintext port that carries nothing else."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from inference_images.runtime.tls import (
    DIR_CA,
    DIR_CERT,
    DIR_KEY,
    GATEWAY_IDENTITY,
    CertificateReloader,
    TlsConfigError,
    TlsFiles,
)
from tests.runtime.conftest import TENANT, RuntimeServer, start_server, text_request
from xds_server.local.certs import LocalPki
from xds_server.local.processes import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return LocalPki.ensure(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def server(pki: LocalPki) -> Iterator[tuple[RuntimeServer, int]]:
    health = free_port()
    srv = start_server("sentiment:v1:lexicon", tls=TlsFiles.from_dir(pki.runtime_dir), tls_reload_s=0.05,
                       health_port=health)
    try:
        deadline = time.monotonic() + 30  # a hang guard: the lexicon model loads in milliseconds
        while _status_or_none(health) != 200:
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.02)
        yield srv, health
    finally:
        srv.stop()


def _status_or_none(port: int) -> int | None:
    try:
        return call(port, None, "/v2/health/ready")[0]
    except OSError:
        return None  # the health port opens just after the data-plane port


def client_context(cert_dir: Path | None, ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # reached by IP, as Envoy reaches pods; the chain is still verified
    if cert_dir is not None:
        ctx.load_cert_chain(cert_dir / DIR_CERT, cert_dir / DIR_KEY)
    return ctx


def call(port: int, ctx: ssl.SSLContext | None, path: str = "/v2/models/sentiment/infer") -> tuple[int, dict]:  # type: ignore[type-arg]
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        body = json.dumps(text_request("great")) if path.endswith("/infer") else None
        conn.request("POST" if body else "GET", path, body=body, headers=TENANT)
        response = conn.getresponse()
        raw = response.read()
        is_json = "json" in response.getheader("Content-Type", "")
        return response.status, json.loads(raw) if is_json else {"raw": raw.decode(errors="replace")}
    finally:
        conn.close()


def served_serial(port: int, ca: Path, client: Path) -> int:
    ctx = client_context(client, ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def test_the_gateways_certificate_is_served(server: tuple[RuntimeServer, int], pki: LocalPki) -> None:
    srv, _ = server
    status, body = call(srv.port, client_context(pki.gateway_dir, pki.ca_cert))
    assert status == 200, body
    assert body["model_name"] == "sentiment"


def test_a_connection_without_a_client_certificate_is_refused(server: tuple[RuntimeServer, int],
                                                             pki: LocalPki) -> None:
    srv, _ = server
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(srv.port, client_context(None, pki.ca_cert))


def test_plaintext_on_the_data_plane_port_gets_nothing(server: tuple[RuntimeServer, int]) -> None:
    srv, _ = server
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        call(srv.port, None)


def test_another_holder_of_the_platform_ca_is_not_the_gateway(server: tuple[RuntimeServer, int], pki: LocalPki,
                                                            tmp_path: Path) -> None:
    """A runtime running model code holds a certificate from the same CA: it may not call a runtime as
    if it were the gateway. A client certificate with another name is answered 403; the runtimes' own
    server certificate is refused at the handshake (it is not for client auth)."""
    srv, _ = server
    pki.issue(tmp_path / "intruder", "intruder.fairshare.internal", client=True)
    status, body = call(srv.port, client_context(tmp_path / "intruder", pki.ca_cert))
    assert status == 403
    assert GATEWAY_IDENTITY in body["error"]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(srv.port, client_context(pki.runtime_dir, pki.ca_cert))


def test_a_certificate_from_another_ca_is_refused(server: tuple[RuntimeServer, int], pki: LocalPki,
                                                  tmp_path: Path) -> None:
    srv, _ = server
    other = LocalPki.ensure(tmp_path / "other")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(srv.port, client_context(other.gateway_dir, pki.ca_cert))


def test_health_port_answers_probes_in_plaintext_and_nothing_else(server: tuple[RuntimeServer, int]) -> None:
    _, health = server
    assert call(health, None, "/v2/health/ready")[0] == 200
    assert call(health, None, "/v2/health/live")[0] == 200
    # The tenant-facing routes are not there: no header reaches a model over this port.
    assert call(health, None)[0] == 404


def test_a_rotated_certificate_serves_new_connections_without_a_restart(server: tuple[RuntimeServer, int],
                                                                        pki: LocalPki) -> None:
    srv, _ = server
    before = served_serial(srv.port, pki.ca_cert, pki.gateway_dir)
    pki.rotate_runtime()
    wanted = x509.load_pem_x509_certificate((pki.runtime_dir / DIR_CERT).read_bytes()).serial_number
    assert wanted != before
    deadline = time.monotonic() + 10  # a hang guard: the reloader checks every 50 ms here
    while served_serial(srv.port, pki.ca_cert, pki.gateway_dir) != wanted:
        assert time.monotonic() < deadline, "the rotated certificate was never served"
        time.sleep(0.05)
    assert call(srv.port, client_context(pki.gateway_dir, pki.ca_cert))[0] == 200


def test_a_half_written_pair_is_refused_and_the_previous_one_keeps_serving(pki: LocalPki, tmp_path: Path) -> None:
    pki.issue(tmp_path / "a", "runtime.fairshare.internal", client=False)
    pki.issue(tmp_path / "b", "runtime.fairshare.internal", client=False)
    reloader = CertificateReloader(TlsFiles.from_dir(tmp_path / "a"))
    # The new certificate landed, its key not yet: they do not match.
    (tmp_path / "a" / DIR_CERT).write_bytes((tmp_path / "b" / DIR_CERT).read_bytes())
    assert reloader.check() is False
    assert reloader.reloads == 0
    (tmp_path / "a" / DIR_KEY).write_bytes((tmp_path / "b" / DIR_KEY).read_bytes())
    assert reloader.check() is True
    assert reloader.reloads == 1


def test_missing_or_mismatched_files_are_a_clear_error(pki: LocalPki, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="not found"):
        CertificateReloader(TlsFiles.from_dir(tmp_path / "nowhere"))
    mixed = TlsFiles(pki.runtime_dir / DIR_CERT, pki.gateway_dir / DIR_KEY, pki.runtime_dir / DIR_CA)
    with pytest.raises(TlsConfigError, match="not a matching certificate"):
        CertificateReloader(mixed)


def test_cli_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inference_images.runtime", "--region", "r", "--pool", "p",
         "--tls-cert", str(tmp_path / "c.pem")],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 2
    assert "--tls-cert, --tls-key and --tls-client-ca" in result.stderr
