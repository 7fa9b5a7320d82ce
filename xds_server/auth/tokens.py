"""Issue tenant tokens the gateway accepts. Locally for `fairshare token`; in production the
customer's identity provider issues them and only the JWKS changes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt

from xds_server.auth.keys import SigningKey
from xds_server.config.loader import load_tenant_alone, tenant_file_ids
from xds_server.config.model import AuthSettings, PlatformConfig, is_name
from xds_server.listing import capped


class UnknownTenant(Exception):
    pass


def issue_token(
    key: SigningKey,
    auth: AuthSettings,
    tenant: str,
    ttl_seconds: int | None = None,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": auth.issuer,
        "aud": auth.audience,
        "sub": tenant,
        auth.tenant_claim: tenant,
        "iat": issued,
        "exp": issued + (ttl_seconds if ttl_seconds is not None else auth.token_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})


def issue_for_config(config: PlatformConfig, key: SigningKey, tenant: str, ttl_seconds: int | None = None) -> str:
    if tenant in config.offboarded:
        raise UnknownTenant(f"tenant {tenant!r} is offboarded: no tokens are issued for it")
    if tenant not in config.tenants:
        raise UnknownTenant(f"unknown tenant {tenant!r} ({len(config.tenants):,} known: "
                            f"{capped(sorted(config.tenants))})")
    return issue_token(key, config.platform.auth, tenant, ttl_seconds)


def issue_from_files(directory: str | Path, key: SigningKey, tenant: str, ttl_seconds: int | None = None) -> str:
    """A token for `tenant` from its own file and platform.yaml alone (`fairshare token`): the gateway, not
    the token, decides what the tenant may reach, so the rest of the config need not load."""
    if not is_name(tenant):  # before any file is read by that name
        raise UnknownTenant(f"unknown tenant {tenant!r}: a tenant id is lowercase letters, digits and '-'")
    platform, found = load_tenant_alone(directory, tenant)
    if found is None:
        known = tenant_file_ids(directory)
        raise UnknownTenant(f"unknown tenant {tenant!r} ({len(known):,} known: {capped(known)})")
    if found.offboard:
        raise UnknownTenant(f"tenant {tenant!r} is offboarded: no tokens are issued for it")
    return issue_token(key, platform.auth, tenant, ttl_seconds)
