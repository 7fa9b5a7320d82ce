"""Mutual TLS on the runtime's admin port (the model-repository extension): with --tls-dir only the control
plane's certificate may list, load or unload models; the gateway's, valid on the data-plane port, is
answered 403 there; and the control plane's client (AdminClient) checks the runtime's certificate in turn."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_images.runtime.tls import CONTROL_PLANE_IDENTITY, GATEWAY_IDENTITY, TlsFiles
from tests.runtime.conftest import RuntimeServer, start_server
from tests.runtime.test_mtls import call, client_context
from xds_server.compiler.endpoints import Endpoint
from xds_server.config import load_config
from xds_server.controlplane import repository
from xds_server.controlplane.admin_client import AdminClient, AdminHttpError, AdminUnreachable
from xds_server.local.certs import LocalPki
from xds_server.local.processes import free_port

REPO = Path(__file__).resolve().parents[2]
INDEX = "/v2/repository/index"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return LocalPki.ensure(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def server(pki: LocalPki) -> Iterator[tuple[RuntimeServer, int]]:
    admin, health = free_port(), free_port()
    srv = start_server("sentiment:v1:lexicon", tls=TlsFiles.from_dir(pki.runtime_dir), admin_port=admin,
                       health_port=health)
    try:
        deadline = time.monotonic() + 30  # a hang guard: the health port opens after the admin port
        while True:
            try:
                if call(health, None, "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.02)
        yield srv, admin
    finally:
        srv.stop()


def test_the_control_planes_certificate_reads_the_index(server: tuple[RuntimeServer, int], pki: LocalPki) -> None:
    _, admin = server
    rows = repository.index(Endpoint("127.0.0.1", 1, admin), client=AdminClient(pki.controlplane_dir))
    assert [(r["name"], r["pinned"]) for r in rows] == [("sentiment", True)]


def test_the_control_plane_unloads_through_the_same_client(server: tuple[RuntimeServer, int],
                                                           pki: LocalPki) -> None:
    _, admin = server
    client, ep = AdminClient(pki.controlplane_dir), Endpoint("127.0.0.1", 1, admin)
    assert repository.unload(ep, "acme:never-loaded", client=client) is None  # 404: nothing to unload
    reason = repository.unload(ep, "sentiment", client=client)
    assert reason is not None and "HTTP 400" in reason and "pinned" in reason


def test_a_client_without_a_certificate_is_refused_at_the_handshake(server: tuple[RuntimeServer, int],
                                                                   pki: LocalPki) -> None:
    _, admin = server
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(admin, client_context(None, pki.ca_cert), INDEX)


def test_the_gateways_certificate_is_refused_on_the_admin_port(server: tuple[RuntimeServer, int],
                                                               pki: LocalPki) -> None:
    """The gateway may call models, never load or unload them: same CA, other name, 403."""
    _, admin = server
    with pytest.raises(AdminHttpError) as refused:
        AdminClient(pki.gateway_dir).post("127.0.0.1", admin, INDEX)
    assert refused.value.status == 403
    assert CONTROL_PLANE_IDENTITY in refused.value.message


def test_the_control_planes_certificate_is_refused_on_the_data_plane_port(server: tuple[RuntimeServer, int],
                                                                          pki: LocalPki) -> None:
    srv, _ = server
    status, body = call(srv.port, client_context(pki.controlplane_dir, pki.ca_cert))
    assert status == 403
    assert GATEWAY_IDENTITY in body["error"]


def test_plaintext_gets_nothing_and_says_why(server: tuple[RuntimeServer, int]) -> None:
    _, admin = server
    with pytest.raises(AdminUnreachable, match="serve TLS"):
        AdminClient().post("127.0.0.1", admin, INDEX)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        call(admin, None, INDEX)


def test_the_client_checks_the_runtimes_certificate(server: tuple[RuntimeServer, int], pki: LocalPki,
                                                    tmp_path: Path) -> None:
    """A replica is dialled by IP: the name checked is the runtimes' identity, and the CA is the platform's."""
    _, admin = server
    with pytest.raises(AdminUnreachable, match="handshake"):
        AdminClient(pki.controlplane_dir, server_name="intruder.fairshare.internal").post("127.0.0.1", admin, INDEX)
    other = LocalPki.ensure(tmp_path / "other")
    with pytest.raises(AdminUnreachable, match="handshake"):
        AdminClient(other.controlplane_dir).post("127.0.0.1", admin, INDEX)


def test_tls_without_the_control_planes_certificate_is_a_clear_error(tmp_path: Path) -> None:
    cfg = load_config(REPO / "config")
    assert cfg.platform.gateway.upstream_tls.enabled
    client = AdminClient.for_operator(cfg, None, tmp_path)  # a state dir without `fairshare run`'s CA
    with pytest.raises(AdminUnreachable, match="no --tls-dir holds the control plane's certificate"):
        client.post("127.0.0.1", free_port(), INDEX)
    with pytest.raises(AdminUnreachable, match="TLS file not found"):
        AdminClient(tmp_path / "nowhere").post("127.0.0.1", free_port(), INDEX)


def test_cli_refuses_one_name_for_both_ports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inference_images.runtime", "--region", "r", "--pool", "p",
         "--tls-dir", str(tmp_path), "--tls-admin-client-name", GATEWAY_IDENTITY],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 2
    assert "must accept different clients" in result.stderr
