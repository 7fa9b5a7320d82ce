"""Through the real Envoy: every answer the gateway itself gives reads `{"error": ..., "code": N}` and names
its cause (compiler/listener.py): a token without a tenant claim, a CONNECT.
A request Envoy's codec or path normalisation refuses is a 400 naming why.
No response shows a client the replica that served it (the gateway's access log does)."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from bench.loadgen import infer_body
from tests.e2e.conftest import RunningPlatform, post, served_by
from xds_server.auth.tokens import issue_token

pytestmark = pytest.mark.e2e
US = "us-east-1"


def raw(running: RunningPlatform, request_line: str, token: str | None = None) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    """Send one HTTP/1.1 request as written (urllib would quote or refuse it): status, JSON body, head."""
    address = urlsplit(running.url(US, ""))
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        head = f"{request_line}\r\nhost: gateway\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head


def test_a_verified_token_without_a_tenant_claim_is_401_naming_the_claim(running: RunningPlatform) -> None:
    assert running.platform.config is not None
    auth = running.platform.config.platform.auth
    url = running.url(US, "/v2/models/classifier/infer")
    # Signed with the platform's key, valid in every other way: the tenant claim missing, or empty.
    for token in (issue_token(running.key, auth.model_copy(update={"tenant_claim": "not-" + auth.tenant_claim}),
                              "acme"),
                  issue_token(running.key, auth, "")):
        reply = post(url, infer_body(["x"]), token)
        assert reply.body == {"error": f"the token carries no tenant claim ('{auth.tenant_claim}')",
                              "code": 401}, reply
        assert reply.status == 401
    # The region's refusal is unchanged for a tenant the token names.
    assert post(running.url("eu-west-1", "/v2/models/classifier/infer"), infer_body(["x"]),
                running.token("globex")).status == 403


def test_connect_needs_the_token_and_is_refused_with_it(running: RunningPlatform) -> None:
    # It used to skip the JWT filter (whose rule was a path prefix) and get a 403 "tenant - ...".
    status, body, _ = raw(running, "CONNECT example.com:443 HTTP/1.1")
    assert (status, body) == (401, {"error": "Jwt is missing", "code": 401})
    status, body, _ = raw(running, "CONNECT example.com:443 HTTP/1.1", running.token("acme"))
    assert status == 405 and body["code"] == 405 and "CONNECT is not served" in body["error"], body


def test_a_request_the_codec_refuses_names_why(running: RunningPlatform) -> None:
    status, body, _ = raw(running, "POST /v2/models/classifier#/../embedder/infer HTTP/1.1", running.token("acme"))
    assert status == 400 and body["code"] == 400, body
    assert body["error"].startswith("malformed request: ") and len(body["error"]) > len("malformed request: "), body
    assert "embedder" not in body["error"]  # nothing the client wrote


def test_no_response_shows_the_replica_but_the_access_log_does(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]), running.token("globex"))
    assert reply.status == 200, reply.body
    assert "x-fairshare-replica" not in reply.headers and "x-envoy-upstream-service-time" not in reply.headers
    assert reply.headers["x-request-id"]
    started = time.monotonic()
    replica = served_by(running.platform, reply)
    assert replica is not None and replica.startswith(f"{US}/"), replica
    assert time.monotonic() - started < 30
    # The gateway's own answers carry no replica either.
    refused = post(running.url(US, "/v2/models/no-such-model/infer"), infer_body(["x"]), running.token("globex"))
    assert refused.status == 404 and served_by(running.platform, refused) is None
