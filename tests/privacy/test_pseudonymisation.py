"""Pseudonymisation in the runtime: a tenant's keyed pseudonyms, its keys read through one interface (a key
file here; Secrets Manager in test_pseudonymisation_keys_aws.py), and what fails closed.

The pseudonym is recomputed here from the documented formula (HMAC-SHA256 over type, NUL and the
normalised value, 16 hex digits), not with the runtime's function, so the format the tenant's analytics
rely on is what is tested. The echo model answers with the text it was given: what reached the model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_images.runtime.logs import JsonFormatter
from inference_images.runtime.models.registry import LoaderRegistry, default_loaders
from inference_images.runtime.pii.entities import Entity
from inference_images.runtime.pii.keys import FileKeys, KeyRing, KeyUnavailableError, key_file
from inference_images.runtime.pii.pseudonyms import Pseudonymiser
from inference_images.runtime.pii.redactor import redact
from inference_images.runtime.pii.rules import PiiRules
from tests.runtime.conftest import RuntimeServer, start_server, text_request
from tests.runtime.test_pii_entities import fullwidth
from tests.runtime.test_pii_server import EchoModel

EMAIL = "Bob.Smith@Example.com"
PSEUDONYM = re.compile(r"<EMAIL_[0-9a-f]{16}>")
RULES = PiiRules(redact=frozenset({Entity.PHONE}), pseudonymise=frozenset({Entity.EMAIL}))


def expected(key: bytes, entity: str, normalised: str) -> str:
    digest = hmac.new(key, f"{entity}\0{normalised}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"<{entity.upper()}_{digest}>"


def write_key(directory: Path, tenant: str, key: bytes | None = None) -> bytes:
    key = key or secrets.token_hex(32).encode()
    path = key_file(directory, tenant)
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    return key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the pseudonym ----------------------------------------------------------------------------------------


def test_same_tenant_and_value_give_the_same_pseudonym_whatever_the_spelling() -> None:
    key = secrets.token_bytes(32)
    tenant = Pseudonymiser(key)
    text = f"mail {EMAIL}, or {EMAIL.lower()}, call (415) 555-0132"
    result = redact(text, RULES, pseudonyms=tenant)
    want = expected(key, "email", EMAIL.lower())
    assert result.text == f"mail {want}, or {want}, call [PHONE]"
    assert EMAIL.lower() not in result.text.lower()
    assert dict(result.counts) == {Entity.EMAIL: 2, Entity.PHONE: 1}
    # Numbers join however they were written; the type is part of the message.
    # Fullwidth digits, no-break spaces and zero-width characters make no other value.
    assert tenant.pseudonym(Entity.CREDIT_CARD, fullwidth("4111 1111 1111 1111")) == tenant.pseudonym(
        Entity.CREDIT_CARD, "4111\u00a01111\u200b1111-1111")
    assert tenant.pseudonym(Entity.EMAIL, fullwidth("Bob@Example.com")) == tenant.pseudonym(
        Entity.EMAIL, "bob@example.com")
    assert tenant.pseudonym(Entity.PHONE, "+1 415-555-0132") == tenant.pseudonym(Entity.PHONE, "+14155550132")
    assert tenant.pseudonym(Entity.IP_ADDRESS, "2001:DB8::1") == tenant.pseudonym(Entity.IP_ADDRESS, "2001:db8:0::1")
    iban = "GB82WEST12345698765432"
    assert tenant.pseudonym(Entity.IBAN, "GB82 WEST 1234 5698 7654 32") == expected(key, "iban", iban)
    digits = "4111111111111111"
    assert tenant.pseudonym(Entity.CREDIT_CARD, digits) != tenant.pseudonym(Entity.PHONE, digits)
    # NULs and combining marks a tokenizer drops make no other value either; an accented address is its
    # own mailbox, however its accents are encoded.
    assert tenant.pseudonym(Entity.CREDIT_CARD, "\0".join(digits)) == tenant.pseudonym(Entity.CREDIT_CARD, digits)
    assert tenant.pseudonym(Entity.CREDIT_CARD, "\u0301".join(digits)) == tenant.pseudonym(Entity.CREDIT_CARD, digits)
    assert tenant.pseudonym(Entity.EMAIL, "\0".join("bob@example.com")) == tenant.pseudonym(
        Entity.EMAIL, "bob@example.com")
    accented = tenant.pseudonym(Entity.EMAIL, "b\u00f3b@example.com")
    assert tenant.pseudonym(Entity.EMAIL, "bo\u0301b@example.com") == accented
    assert accented != tenant.pseudonym(Entity.EMAIL, "bob@example.com")


def test_two_tenants_get_unrelated_pseudonyms_and_the_key_never_shows() -> None:
    key_a, key_b = secrets.token_bytes(32), secrets.token_bytes(32)
    a, b = Pseudonymiser(key_a), Pseudonymiser(key_b)
    assert a.pseudonym(Entity.EMAIL, EMAIL) != b.pseudonym(Entity.EMAIL, EMAIL)
    assert PSEUDONYM.fullmatch(a.pseudonym(Entity.EMAIL, EMAIL))
    for shown in (repr(a), str(a), f"{a}"):
        assert key_a.hex() not in shown and str(key_a) not in shown
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(a)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Pseudonymiser(b"short")


def test_rules_need_the_key_and_block_wins() -> None:
    with pytest.raises(ValueError, match="no pseudonymisation key"):
        redact(EMAIL, RULES)  # never the raw value, never silently a placeholder
    rules = PiiRules(block=frozenset({Entity.EMAIL}), pseudonymise=frozenset({Entity.EMAIL, Entity.IBAN}))
    assert rules.pseudonymise == {Entity.IBAN} and rules.block == {Entity.EMAIL}
    assert PiiRules.from_headers("email,phone", "", "email").redact == {Entity.PHONE}


# --- keys: a file source behind the key ring ---------------------------------------------------------------


def test_a_rotated_key_is_used_after_the_ttl(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing(FileKeys(tmp_path), ttl_s=60, clock=clock)
    old = write_key(tmp_path, "acme")
    assert ring.get("acme").pseudonym(Entity.EMAIL, EMAIL) == expected(old, "email", EMAIL.lower())
    new = write_key(tmp_path, "acme")
    clock.now += 59
    assert ring.cached("acme") is not None
    assert ring.get("acme").pseudonym(Entity.EMAIL, EMAIL) == expected(old, "email", EMAIL.lower())
    clock.now += 2
    assert ring.cached("acme") is None  # stale: the server reads it again, off the event loop
    assert ring.get("acme").pseudonym(Entity.EMAIL, EMAIL) == expected(new, "email", EMAIL.lower())


def test_a_missing_or_deleted_key_fails_closed_and_names_where(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing(FileKeys(tmp_path), ttl_s=60, retry_s=5, clock=clock)
    with pytest.raises(KeyUnavailableError) as missing:
        ring.get("acme")
    assert "tenant 'acme'" in str(missing.value) and str(key_file(tmp_path, "acme")) in str(missing.value)
    # Remembered for retry_s: a flood of requests is not a flood of reads.
    write_key(tmp_path, "acme")
    with pytest.raises(KeyUnavailableError):
        ring.get("acme")
    clock.now += 5
    assert ring.get("acme") is not None
    # Deleted after it was read (an offboarded tenant): once the TTL ends it is not used any more.
    key_file(tmp_path, "acme").unlink()
    clock.now += 61
    with pytest.raises(KeyUnavailableError):
        ring.get("acme")
    # A placeholder-sized value is not a key.
    write_key(tmp_path, "short", b"x" * 8)
    with pytest.raises(KeyUnavailableError, match="fewer than 32 bytes"):
        ring.get("short")


# --- through the runtime's HTTP API ------------------------------------------------------------------------


class Lines(logging.Handler):
    """Every log line the runtime writes during the module, as the JSON formatter writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.formatter_ = JsonFormatter({"replica": "r-test"})
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.formatter_.format(record))


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def logged() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def _echo_loaders() -> LoaderRegistry:
    loaders = default_loaders()
    loaders.register("echo", lambda name, version: EchoModel(name, version, negation=False))
    return loaders


@pytest.fixture(scope="module")
def server(keys_dir: Path, logged: Lines) -> Iterator[RuntimeServer]:
    running = start_server("echo:v1:echo", loaders=_echo_loaders(), access_log=True,
                           pseudonymisation_keys=f"file:{keys_dir}")
    running.wait_ready(10)
    yield running
    running.stop()


def headers(tenant: str) -> dict[str, str]:
    return {"x-fairshare-tenant": tenant, "x-fairshare-pii-redact": "phone", "x-fairshare-pii-pseudonymise": "email"}


def test_the_model_receives_the_tenants_pseudonym(server: RuntimeServer, keys_dir: Path, logged: Lines) -> None:
    key_a, key_b = write_key(keys_dir, "acme"), write_key(keys_dir, "globex")
    text = f"write to {EMAIL} or call (415) 555-0132"
    reply = server.infer("/v2/models/echo/infer", text_request(text), headers=headers("acme"))
    assert reply.status == 200, reply.body
    want = expected(key_a, "email", EMAIL.lower())
    assert reply.body["outputs"][0]["data"] == [f"write to {want} or call [PHONE]"]
    assert reply.headers["x-fairshare-pii-pseudonymised"] == "email=1"
    assert reply.headers["x-fairshare-pii-redacted"] == "phone=1"
    # Stable for the tenant, different for another.
    again = server.infer("/v2/models/echo/infer", text_request(EMAIL), headers=headers("acme"))
    other = server.infer("/v2/models/echo/infer", text_request(EMAIL), headers=headers("globex"))
    assert again.body["outputs"][0]["data"] == [want]
    assert other.body["outputs"][0]["data"] == [expected(key_b, "email", EMAIL.lower())] != [want]
    assert not any(EMAIL.lower() in line.lower() or key_a.decode() in line for line in logged.lines)


def test_a_tenant_without_a_key_is_refused_not_served_raw(server: RuntimeServer, logged: Lines) -> None:
    reply = server.infer("/v2/models/echo/infer", text_request(f"to {EMAIL}"), headers=headers("initech"))
    assert reply.status == 503
    assert "tenant 'initech'" in reply.error and "initech.key" in reply.error
    assert "retry-after" in reply.headers
    assert EMAIL.lower() not in json.dumps(reply.body).lower()
    assert any('"tenant": "initech"' in line and "pseudonymisation key unavailable" in line for line in logged.lines)
    # Without a key source at all: the same refusal, naming the missing flag.
    bare = start_server("echo:v1:echo", loaders=_echo_loaders())
    try:
        bare.wait_ready(10)
        reply = bare.infer("/v2/models/echo/infer", text_request(f"to {EMAIL}"), headers=headers("acme"))
        assert reply.status == 503 and "--pseudonymisation-keys" in reply.error
    finally:
        bare.stop()
