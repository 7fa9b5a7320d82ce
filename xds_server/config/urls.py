"""Service URLs the config names (Redis for rate limits, the OPA server): checked when the config is read,
so a typo is a problem naming the file and field instead of a traceback when `serve` first connects, and
shown only with their userinfo hidden, so a password in one never reaches an error, /status or the audit
trail."""

from __future__ import annotations

from urllib.parse import urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
HIDDEN = "***"


def without_userinfo(url: str) -> str:
    """`url` with everything before its last `@` (after the scheme) replaced by `***`. By hand, not through
    urlsplit, which raises on some malformed URLs (this must hold for any text, a URL refused as malformed
    included) and which ends the userinfo at a `/`, `?` or `#` that an unencoded password may hold: better
    to hide a path that holds an `@` (these URLs have none worth showing) than to show such a password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://{HIDDEN}@{rest.rpartition('@')[2]}"


def has_userinfo(url: str) -> bool:
    return without_userinfo(url) != url


def redis_url_problem(url: str) -> str | None:
    """What is wrong with `url` as the rate limiter's Redis URL, or None. The message shows the URL with its
    password hidden."""
    shown = without_userinfo(url)
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in REDIS_SCHEMES:
        return (f"must be a redis://, rediss:// or unix:// URL (e.g. redis://127.0.0.1:6379/0), got "
                f"{f'{scheme}://…' if sep else repr(shown)}")
    try:
        parts = urlsplit(url)
    except ValueError as err:  # "Invalid IPv6 URL": it names no part of the URL
        return f"is not a valid URL: {err} ({shown})"
    if "@" in url.partition("://")[2] and "@" not in parts.netloc:
        return (f"has an @ after its host: a / ? or # in the user or password ends the host part; "
                f"percent-encode them (%2F, %3F, %23) ({shown})")
    try:
        port = parts.port  # raises for a port that is no number, or out of 0-65535
    except ValueError:
        return f"its port must be a number from 1 to 65535 ({shown})"
    if scheme == "unix":
        if not parts.path:
            return f"names no socket path (e.g. unix:///run/redis/redis.sock) ({shown})"
    else:
        if not parts.hostname:
            return f"names no host (e.g. redis://127.0.0.1:6379/0) ({shown})"
        if port == 0:  # the client would take 0 for no port and dial 6379
            return f"its port must be a number from 1 to 65535 ({shown})"
        if parts.path not in ("", "/") and not parts.path[1:].isdigit():  # the client ignores it: database 0
            return f"its path must be the database number, e.g. /0 ({shown})"
    from redis.asyncio.connection import parse_url  # what RedisBackend's client reads it with

    try:
        parse_url(url)
    except ValueError as err:  # a query parameter it refuses; its message names the parameter, not the URL
        return f"the Redis client refuses it: {err} ({shown})"
    return None
