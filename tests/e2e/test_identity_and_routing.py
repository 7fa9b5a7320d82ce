"""Through the real Envoy: who a caller is comes only from a verified token, and what it may reach
comes only from its tenant's routes."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bench.loadgen import infer_body
from tests.e2e.conftest import RunningPlatform, get, post, served_by
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token

pytestmark = pytest.mark.e2e
US, EU = "us-east-1", "eu-west-1"


def test_real_model_answers_through_the_gateway(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/embedder/infer"), infer_body(["hello", "hi there"]),
                 running.token("acme"))
    assert reply.status == 200, reply.body
    assert reply.body["model_name"] == "embedder"
    assert reply.body["model_version"] in {"v1", "v2"}
    out = reply.body["outputs"][0]
    assert out["shape"] == [2, 384] and len(out["data"]) == 2 * 384


def test_light_model_answers(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/classifier/infer"), infer_body(["I love this"]),
                 running.token("globex"))
    assert reply.status == 200, reply.body
    assert {o["name"] for o in reply.body["outputs"]} >= {"label", "score"}


def test_the_gateway_answers_server_health_without_a_credential(running: RunningPlatform) -> None:
    envoy = running.platform.envoys[US]
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert get(running.url(US, path)).status == 200, path
    # Draining (a preStop hook, a rollout): health says so at once, so clients and load balancers move on,
    # while requests still in flight are served.
    envoy.admin_post("/healthcheck/fail")
    try:
        assert get(running.url(US, "/v2/health/ready")).status == 503
        assert post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]),
                    running.token("globex")).status == 200
    finally:
        envoy.admin_post("/healthcheck/ok")
    assert get(running.url(US, "/v2/health/ready")).status == 200
    # Only those two paths: anything else under /v2/health is a tenant's route, behind the credential.
    assert get(running.url(US, "/v2/health/live/x")).status == 401


def test_server_metadata_is_the_gateways_own_behind_a_credential(running: RunningPlatform) -> None:
    assert get(running.url(US, "/v2")).status == 401
    reply = get(running.url(US, "/v2"), running.token("acme"))
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert reply.body["name"] == "fairshare-gateway" and reply.body["extensions"] == ["binary_tensor_data"]
    # Errors keep their shape next to it.
    assert get(running.url(US, "/v2/nothing"), running.token("acme")).body == {
        "error": "no such endpoint", "code": 404}


def test_an_error_has_one_shape_whether_envoy_or_a_replica_answered(running: RunningPlatform) -> None:
    token = running.token("globex")
    by_envoy = post(running.url(US, "/v2/models/no-such-model/infer"), infer_body(["x"]), token)
    by_replica = post(running.url(US, "/v2/models/classifier/infer"), b'{"inputs": 7}', token)
    # Who answered is in the gateway's access log, never on the response (no topology for clients).
    assert served_by(running.platform, by_envoy) is None and served_by(running.platform, by_replica) is not None
    assert "x-fairshare-replica" not in by_replica.headers
    for reply, status in ((by_envoy, 404), (by_replica, 400)):
        assert reply.status == status and reply.body["code"] == status, reply.body
        assert set(reply.body) == {"error", "code"} and reply.headers["content-type"].startswith("application/json")


def test_no_or_malformed_credential_is_401(running: RunningPlatform) -> None:
    url = running.url(US, "/v2/models/classifier/infer")
    assert post(url, infer_body(["x"])).status == 401
    assert post(url, infer_body(["x"]), token="not-a-jwt").status == 401


def test_expired_token_is_401(running: RunningPlatform) -> None:
    expired = running.token("acme", now=time.time() - 7200, ttl_seconds=600)
    assert post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]), expired).status == 401


def test_a_token_without_expiry_is_401(running: RunningPlatform) -> None:
    assert running.platform.config is not None
    auth = running.platform.config.platform.auth
    claims = {"iss": auth.issuer, "aud": auth.audience, auth.tenant_claim: "acme", "iat": int(time.time())}
    forever = jwt.encode(claims, running.key.private, algorithm="ES256", headers={"kid": running.key.kid})
    url = running.url(US, "/v2/models/classifier/infer")
    assert post(url, infer_body(["x"]), forever).status == 401
    assert post(url, infer_body(["x"]), running.token("acme")).status == 200  # the same key, with `exp`


def test_a_token_is_taken_from_the_authorization_header_only(running: RunningPlatform) -> None:
    """Envoy's default also reads `?access_token=`, which proxies and browsers log, and there it won over
    the header: a query token is no credential, and never stands in for the header's."""
    base = running.url(US, "/v2/models/classifier/infer")
    assert post(f"{base}?access_token={running.token('acme')}", infer_body(["x"])).status == 401
    beside = post(f"{base}?access_token=garbage", infer_body(["x"]), running.token("acme"))
    assert beside.status == 200, beside
    assert get(running.url(US, "/v2/models/intent") + f"?access_token={running.token('globex')}",
               running.token("acme")).status == 404  # acme has no own intent; the query's globex is ignored


def test_unsigned_token_is_401(running: RunningPlatform) -> None:
    assert running.platform.config is not None
    auth = running.platform.config.platform.auth
    claims = {"iss": auth.issuer, "aud": auth.audience, auth.tenant_claim: "acme", "exp": int(time.time()) + 600}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]), unsigned).status == 401


def test_token_signed_by_another_key_is_401(running: RunningPlatform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert running.platform.config is not None
    other = SigningKey(private=ec.generate_private_key(ec.SECP256R1()), kid=running.key.kid)
    forged = issue_token(other, running.platform.config.platform.auth, "acme")
    assert post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]), forged).status == 401


# Envoy's JWT filter answers an audience it does not accept with 403, every other bad token with 401; both
# say why in the body and in WWW-Authenticate (invalid_token), and neither reaches a runtime.
@pytest.mark.parametrize(("claim", "status", "reason"), [
    ("audience", 403, "Audiences in Jwt are not allowed"),
    ("issuer", 401, "Jwt issuer is not configured"),
])
def test_token_signed_with_our_key_for_another_audience_or_issuer_is_refused(
    running: RunningPlatform, claim: str, status: int, reason: str,
) -> None:
    # Signed with the platform's own key, so only the audience or issuer check can refuse it.
    assert running.platform.config is not None
    auth = running.platform.config.platform.auth
    url = running.url(US, "/v2/models/classifier/infer")
    other = issue_token(running.key, auth.model_copy(update={claim: "someone-else"}), "acme")
    reply = post(url, infer_body(["x"]), other)
    assert (reply.status, reply.body.get("error")) == (status, reason), reply
    assert "invalid_token" in reply.headers.get("www-authenticate", "")
    assert "x-fairshare-replica" not in reply.headers
    # The same token with the right claim passes: the refusal above is the claim's doing, not the key's.
    assert post(url, infer_body(["x"]), issue_token(running.key, auth, "acme")).status == 200


def test_token_for_a_tenant_not_in_config_is_refused(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]), running.token("mallory"))
    assert reply.status == 403
    assert reply.body == {"error": "tenant mallory is not served in region us-east-1", "code": 403}


def test_spoofed_tenant_header_is_ignored(running: RunningPlatform) -> None:
    url = running.url(US, "/v2/models/embedder/infer")
    # globex may not use embedder: claiming to be acme in a header changes nothing.
    spoof = post(url, infer_body(["x"]), running.token("globex"), {"x-fairshare-tenant": "acme"})
    assert spoof.status == 403
    # acme may: a header claiming globex does not take that away either.
    assert post(url, infer_body(["x"]), running.token("acme"), {"x-fairshare-tenant": "globex"}).status == 200


def test_spoofed_policy_headers_are_replaced(running: RunningPlatform) -> None:
    # A client-sent region header would make the runtime refuse (403) if it reached it; Envoy strips it.
    reply = post(running.url(US, "/v2/models/classifier/infer"), infer_body(["x"]), running.token("globex"),
                 {"x-fairshare-region": EU, "x-fairshare-weight": "1000", "x-fairshare-model-version": "v9"})
    assert reply.status == 200, reply.body
    assert reply.body["model_version"] in {"v1", "v2"}


EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"


def test_a_client_cannot_switch_its_own_redaction_off(running: RunningPlatform) -> None:
    # acme's rules (redact email, block credit_card) come from its route, whatever the client sends.
    url, token = running.url(US, "/v2/models/classifier/infer"), running.token("acme")
    off = {"x-fairshare-pii-redact": "", "X-Fairshare-Pii-Block": "", "x-fairshare-max-queue": "not-a-number"}
    reply = post(url, infer_body([f"write to {EMAIL}"]), token, off)
    assert reply.status == 200, reply.body
    assert reply.headers.get("x-fairshare-pii-redacted") == "email=1"
    blocked = post(url, infer_body([f"card {CARD}"]), token, off)
    assert blocked.status == 422 and "credit_card" in blocked.body["error"], blocked.body


def test_client_pii_and_queue_headers_never_reach_the_runtime(running: RunningPlatform) -> None:
    # hooli's data class needs no rules, so its route sets no PII header and nothing would overwrite a
    # client's: only Envoy's stripping keeps them from the runtime, which would block the email (422) or
    # redact it if they reached it. (The route also overwrites the queue bound, and the JWT filter the
    # tenant; a malformed bound would be a 400.)
    url, token = running.url(US, "/v2/models/classifier/infer"), running.token("hooli")
    spoofed = {"x-fairshare-pii-block": "email", "x-fairshare-pii-redact": "email",
               "x-fairshare-max-queue": "not-a-number", "x-fairshare-tenant": "acme"}
    reply = post(url, infer_body([f"write to {EMAIL}"]), token, spoofed)
    assert reply.status == 200, reply.body
    assert "x-fairshare-pii-redacted" not in reply.headers


def test_model_the_tenant_may_not_use_is_403(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/embedder/infer"), infer_body(["x"]), running.token("globex"))
    assert reply.status == 403
    assert "may not use model embedder" in reply.body["error"]


def test_unknown_model_is_404(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/nosuchmodel/infer"), infer_body(["x"]), running.token("acme"))
    assert reply.status == 404
    assert "unknown model" in reply.body["error"]


def test_tenant_outside_its_regions_is_403(running: RunningPlatform) -> None:
    reply = post(running.url(EU, "/v2/models/classifier/infer"), infer_body(["x"]), running.token("globex"))
    assert reply.status == 403
    assert reply.body == {"error": "tenant globex is not served in region eu-west-1", "code": 403}


def test_eu_tenant_served_in_eu(running: RunningPlatform) -> None:
    reply = post(running.url(EU, "/v2/models/embedder/infer"), infer_body(["bonjour"]), running.token("initech"))
    assert reply.status == 200, reply.body
    assert (served_by(running.platform, reply) or "").startswith(EU)


def test_malformed_body_is_400_with_reason(running: RunningPlatform) -> None:
    url = running.url(US, "/v2/models/classifier/infer")
    bad_json = post(url, b"{not json", running.token("globex"))
    assert bad_json.status == 400 and bad_json.body.get("error")
    mismatch = post(url, b'{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","data":["one"]}]}',
                    running.token("globex"))
    assert mismatch.status == 400 and "shape" in mismatch.body["error"]


def test_explicit_version_in_path_pins_the_version(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    # Ten requests back to back are past globex's burst (10 at 50/s) after the module's other calls: its
    # limit would refuse some (429), rightly; this test is about the pin, not the limit.
    unthrottled("globex")
    url = running.url(US, "/v2/models/classifier/versions/v2/infer")
    replies = [post(url, infer_body(["x"]), running.token("globex")) for _ in range(10)]
    refused = [(r.status, r.body, dict(r.headers)) for r in replies if r.status != 200]
    assert not refused, refused
    assert {r.body.get("model_version") for r in replies} == {"v2"}


def test_a_version_the_tenant_is_not_granted_is_unknown_to_it(running: RunningPlatform) -> None:
    """acme's grant is classifier v1 alone (its split); v2 runs on the same pool for others. Naming it in
    the path (tritonclient's model_version) must not reach it, nor say which versions exist."""
    token = running.token("acme")
    for path in ("/v2/models/classifier/versions/v2/infer", "/v2/models/classifier/versions/v3/infer"):
        reply = post(running.url(US, path), infer_body(["x"]), token)
        version = path.split("/")[5]
        assert reply.status == 404, (path, reply.body)
        assert reply.body["error"] == f"unknown version '{version}' of model 'classifier'"
    metadata = get(running.url(US, "/v2/models/classifier/versions/v2"), token)
    ready = get(running.url(US, "/v2/models/classifier/versions/v2/ready"), token)
    assert (metadata.status, ready.status) == (404, 404), (metadata.body, ready.body)
    granted = post(running.url(US, "/v2/models/classifier/versions/v1/infer"), infer_body(["x"]), token)
    assert granted.status == 200 and granted.body["model_version"] == "v1", granted.body
