"""The Redis password comes from FAIRSHARE_REDIS_PASSWORD, never from the arguments (the chart's way)."""

from __future__ import annotations

import pytest

from xds_server.ratelimit.redis_auth import PASSWORD_ENV, RedisUrlError, with_env_password


def test_the_password_from_the_environment_joins_the_url() -> None:
    url = with_env_password("redis://fairshare@fairshare-redis:6379/0", {PASSWORD_ENV: "p@ss/word"})
    assert url == "redis://fairshare:p%40ss%2Fword@fairshare-redis:6379/0"
    assert with_env_password("redis://h:6379/0", {}) == "redis://h:6379/0"


def test_two_passwords_are_an_error() -> None:
    with pytest.raises(RedisUrlError, match=PASSWORD_ENV):
        with_env_password("redis://u:pw@h:6379/0", {PASSWORD_ENV: "other"})
