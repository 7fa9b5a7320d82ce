"""A tenant's counters are deleted from the backend that holds them (a real Redis, and the memory backend),
exactly: keys of a tenant whose name merely contains the offboarded one's, or of another tenant in a region
of the same name, stay."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from xds_server.offboard.http import purge
from xds_server.ratelimit.backends.memory import MemoryBackend
from xds_server.ratelimit.backends.redis import RedisBackend
from xds_server.ratelimit.local_redis import RedisServer

KEYS = {
    "fs:us-east-1:acme:requests": True,
    "fs:eu-west-1:acme:tokens": True,
    "fs:us-east-1:acme-two:requests": False,  # another tenant whose id starts with acme
    "fs:acme:globex:requests": False,  # a region named like the tenant
    "other:us-east-1:acme:requests": False,  # not a counter
}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_redis_counters_of_the_tenant_and_only_them_are_deleted(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    for key in KEYS:
        client.set(key, "1")
    for i in range(1500):  # more than one SCAN page and one delete batch
        client.set(f"fs:r{i}:acme:requests", "1")

    async def go() -> tuple[int, int]:
        backend = RedisBackend(redis_url, timeout_s=2)
        try:
            return await purge(backend, "acme"), await purge(backend, "acme")
        finally:
            await backend.close()

    first, second = asyncio.run(go())
    assert first == 1502 and second == 0
    assert sorted(client.keys("*")) == sorted(k for k, gone in KEYS.items() if not gone)


def test_memory_counters_of_the_tenant_and_only_them_are_deleted() -> None:
    backend = MemoryBackend()
    backend._tats.update({key: 1.0 for key in KEYS})
    assert asyncio.run(purge(backend, "acme")) == 2
    assert sorted(backend._tats) == sorted(k for k, gone in KEYS.items() if not gone)
