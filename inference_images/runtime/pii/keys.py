"""Each tenant's pseudonymisation key, read through one interface from one of two sources:

- ``secretsmanager:PREFIX``: AWS Secrets Manager, secret ``PREFIX/<tenant>/pseudonymisation-key`` (what
  terraform/modules/tenant_secrets creates; the runtime's IRSA role may read only those). boto3 finds
  the region, credentials and endpoint the usual way (AWS_REGION, IRSA, AWS_ENDPOINT_URL).
- ``file:DIR``: ``DIR/<tenant>.key`` (``fairshare run`` writes one per tenant in its state dir, 0600).

``KeyRing`` keeps each key for ``ttl_s``, then reads it again, so a rotated key (a new secret version,
a replaced file) is used from then on. A key that cannot be read is never replaced by anything weaker:
the tenant's pseudonymising requests fail (``KeyUnavailableError``, a 503 naming the tenant and the
secret) until it can, and the failure is remembered for ``retry_s`` so a missing key does not turn each
request into a Secrets Manager call. A key past its TTL that cannot be read again fails the same way:
a key that was deleted (an offboarded tenant) or whose read access was revoked stops being used.

Errors and logs name the tenant, the secret or file and the reason (an AWS error code), never the value.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inference_images.runtime.pii.pseudonyms import MIN_KEY_BYTES, Pseudonymiser

log = logging.getLogger(__name__)

# The secret's last name part, after <prefix>/<tenant>/ (terraform/modules/tenant_secrets, offboarding).
SECRET_SUFFIX = "pseudonymisation-key"
DEFAULT_SECRET_PREFIX = "fairshare/tenants"
# A key file's name in a file source's directory: <tenant>.key.
KEY_FILE_SUFFIX = ".key"
DEFAULT_TTL_S = 300.0
DEFAULT_RETRY_S = 5.0


def secret_name(prefix: str, tenant: str) -> str:
    return f"{prefix.rstrip('/')}/{tenant}/{SECRET_SUFFIX}"


def key_file(directory: Path, tenant: str) -> Path:
    return directory / f"{tenant}{KEY_FILE_SUFFIX}"


class KeyUnavailableError(Exception):
    """A tenant's key that could not be had. The message names the tenant, where and why; no value."""

    def __init__(self, tenant: str, where: str, reason: str) -> None:
        self.tenant = tenant
        self.where = where
        self.reason = reason
        super().__init__(f"the pseudonymisation key of tenant '{tenant}' ({where}) could not be read: {reason}")


class KeySourceError(ValueError):
    """A key source that cannot be set up (a bad spec, no AWS region): a configuration error at start."""


class KeySource(Protocol):
    """Where keys come from. ``read`` returns the key's bytes or raises ``KeyUnavailableError``."""

    def where(self, tenant: str) -> str: ...

    def read(self, tenant: str) -> bytes: ...


def _checked(tenant: str, where: str, value: bytes) -> bytes:
    value = value.strip()
    if not value:
        raise KeyUnavailableError(tenant, where, "it is empty")
    if len(value) < MIN_KEY_BYTES:
        raise KeyUnavailableError(tenant, where, f"it holds fewer than {MIN_KEY_BYTES} bytes")
    return value


@dataclass(frozen=True)
class FileKeys:
    directory: Path

    def where(self, tenant: str) -> str:
        return f"key file {key_file(self.directory, tenant)}"

    def read(self, tenant: str) -> bytes:
        path = key_file(self.directory, tenant)
        try:
            value = path.read_bytes()
        except FileNotFoundError:
            raise KeyUnavailableError(tenant, self.where(tenant), "no such file (`fairshare run` writes one "
                                      "per tenant at start; restart it after adding a tenant)") from None
        except OSError as exc:
            raise KeyUnavailableError(tenant, self.where(tenant), exc.strerror or type(exc).__name__) from None
        return _checked(tenant, self.where(tenant), value)


# Secrets Manager's answers that mean "no key", with what an operator should look at.
_AWS_REASONS = {
    "ResourceNotFoundException": "no such secret, or it has no value yet (the Terraform region root writes "
    "one with generate_tenant_keys = true)",
    "AccessDeniedException": "access denied (the runtime's role may read <prefix>/*/pseudonymisation-key "
    "secrets of its region only)",
    "InvalidRequestException": "the secret is scheduled for deletion (an offboarded tenant?)",
    "DecryptionFailure": "Secrets Manager could not decrypt it with its KMS key",
}


class SecretsManagerKeys:
    def __init__(self, prefix: str = DEFAULT_SECRET_PREFIX, client: Any | None = None) -> None:
        if not prefix.strip("/") or "*" in prefix:
            raise KeySourceError(f"secret prefix {prefix!r} must be a non-empty literal prefix (no wildcard)")
        self.prefix = prefix.rstrip("/")
        if client is None:
            import boto3
            from botocore.exceptions import BotoCoreError

            # Created once, at start: a missing region is a configuration error before anything serves.
            try:
                # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what EKS and most SDKs set too.
                client = boto3.client("secretsmanager", region_name=os.environ.get("AWS_REGION") or None)
            except BotoCoreError as exc:
                raise KeySourceError(f"Secrets Manager client for pseudonymisation keys: {exc} (set AWS_REGION "
                                     "to the region whose secrets this replica reads)") from None
        self._client = client

    def where(self, tenant: str) -> str:
        return f"secret {secret_name(self.prefix, tenant)}"

    def read(self, tenant: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.where(tenant)
        try:
            reply = self._client.get_secret_value(SecretId=secret_name(self.prefix, tenant))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
            reason = _AWS_REASONS.get(code, "see the AWS error code")
            raise KeyUnavailableError(tenant, where, f"{code}: {reason}") from None
        except BotoCoreError as exc:
            # No credentials, no endpoint, a timeout: botocore's messages name endpoints, never values.
            raise KeyUnavailableError(tenant, where, type(exc).__name__) from None
        if reply.get("SecretString") is not None:
            return _checked(tenant, where, str(reply["SecretString"]).encode())
        if reply.get("SecretBinary") is not None:
            return _checked(tenant, where, bytes(reply["SecretBinary"]))
        raise KeyUnavailableError(tenant, where, "the secret has no value")


def parse_source(spec: str) -> KeySource:
    """``secretsmanager:PREFIX`` or ``file:DIR`` (the runtime's --pseudonymisation-keys)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "file" and rest:
        return FileKeys(Path(rest))
    if sep and kind == "secretsmanager" and rest:
        return SecretsManagerKeys(rest)
    raise KeySourceError(f"pseudonymisation key source {spec!r} must be secretsmanager:PREFIX (e.g. "
                     f"secretsmanager:{DEFAULT_SECRET_PREFIX}) or file:DIR")


@dataclass
class _Entry:
    pseudonymiser: Pseudonymiser | None
    until: float  # monotonic time the entry stops being used
    error: KeyUnavailableError | None = None


class KeyRing:
    """Keys by tenant, each read once per ``ttl_s`` (one read at a time per tenant)."""

    def __init__(self, source: KeySource, ttl_s: float = DEFAULT_TTL_S, retry_s: float = DEFAULT_RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or retry_s <= 0:
            raise ValueError("key TTL and retry interval must be positive")
        self.source = source
        self.ttl_s = ttl_s
        self.retry_s = min(retry_s, ttl_s)
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def where(self, tenant: str) -> str:
        return self.source.where(tenant)

    def cached(self, tenant: str) -> Pseudonymiser | None:
        """The tenant's key when one is held and fresh: no I/O, for the event loop's fast path."""
        entry = self._entries.get(tenant)
        if entry is not None and entry.pseudonymiser is not None and self._clock() < entry.until:
            return entry.pseudonymiser
        return None

    def get(self, tenant: str) -> Pseudonymiser:
        """The tenant's key, read from the source when none is fresh (blocking: run it off the event loop).
        Raises ``KeyUnavailableError``."""
        hit = self._fresh(tenant)
        if hit is not None:
            return hit
        with self._guard:
            lock = self._locks.setdefault(tenant, threading.Lock())
        with lock:
            # Whoever held the lock may have just read it.
            hit = self._fresh(tenant)
            if hit is not None:
                return hit
            now = self._clock()
            try:
                pseudonymiser = Pseudonymiser(self.source.read(tenant))
            except KeyUnavailableError as exc:
                self._entries[tenant] = _Entry(None, now + self.retry_s, exc)
                log.warning("pseudonymisation key unavailable; the tenant's pseudonymising requests fail",
                            extra={"tenant": tenant, "key": exc.where, "reason": exc.reason})
                raise
            previous = self._entries.get(tenant)
            if previous is not None and previous.pseudonymiser is not None \
                    and previous.pseudonymiser.key_id != pseudonymiser.key_id:
                log.info("pseudonymisation key rotated", extra={"tenant": tenant, "key": self.where(tenant)})
            self._entries[tenant] = _Entry(pseudonymiser, now + self.ttl_s)
            return pseudonymiser

    def _fresh(self, tenant: str) -> Pseudonymiser | None:
        entry = self._entries.get(tenant)
        if entry is None or self._clock() >= entry.until:
            return None
        if entry.error is not None:
            raise entry.error
        return entry.pseudonymiser
