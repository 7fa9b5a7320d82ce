"""The Redis password from the environment, not from the command line.

A password inside `--ratelimit-redis-url` shows in the process list and in every `kubectl describe` of the
pod; the chart passes the URL without it and the password as FAIRSHARE_REDIS_PASSWORD from its Secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

PASSWORD_ENV = "FAIRSHARE_REDIS_PASSWORD"


class RedisUrlError(ValueError):
    """The URL and the environment disagree on the password."""


def with_env_password(url: str, env: Mapping[str, str] = os.environ) -> str:
    """`url` with the password from PASSWORD_ENV (`redis://user@host:port/db` -> `redis://user:pw@...`)."""
    password = env.get(PASSWORD_ENV)
    if not password:
        return url
    parts = urlsplit(url)
    if parts.password is not None:
        raise RedisUrlError(f"--ratelimit-redis-url carries a password and {PASSWORD_ENV} is set too: give one")
    if parts.hostname is None:
        raise RedisUrlError(f"--ratelimit-redis-url has no host: {parts.scheme}://…")
    user = quote(parts.username or "", safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))
