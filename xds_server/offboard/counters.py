"""A tenant's rate-limit counters, deleted by the process that holds them: the control plane runs the
rate-limit service, so only it can reach the memory backend, and it already holds the Redis client.

Counter keys are `fs:<region>:<tenant>:<kind>` (xds_server/ratelimit/service.py); region and tenant
names cannot hold a colon, so the tenant's keys are exactly those whose third field is the tenant.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xds_server.ratelimit.backends import Backend
from xds_server.ratelimit.backends.memory import MemoryBackend
from xds_server.ratelimit.backends.redis import RedisBackend

PREFIX = "fs"
ROUTE = "/offboard/{tenant}/counters"


def is_tenants(key: str, tenant: str) -> bool:
    parts = key.split(":")
    return len(parts) >= 4 and parts[0] == PREFIX and parts[2] == tenant


async def purge(backend: Backend, tenant: str) -> int:
    """Delete every counter of `tenant`; how many there were. Safe to repeat (0 the second time)."""
    if isinstance(backend, MemoryBackend):
        keys = [k for k in backend._tats if is_tenants(k, tenant)]
        for key in keys:
            del backend._tats[key]
        return len(keys)
    if isinstance(backend, RedisBackend):
        client = backend._client
        deleted = 0
        # SCAN, never KEYS: a Redis shared by every gateway must not stall on a full keyspace walk.
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"{PREFIX}:*:{tenant}:*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if is_tenants(name, tenant):
                batch.append(key)
            if len(batch) >= 500:
                deleted += int(await client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(await client.delete(*batch))
        return deleted
    raise TypeError(f"no way to delete counters from a {type(backend).__name__} backend")


def add_route(app: web.Application, backend: Backend, offboarded: Any) -> None:
    """`DELETE /offboard/<tenant>/counters` on the control plane's status app. `offboarded()`: the tenants
    the serving config marks offboarded; any other tenant is refused (409), so a typo never wipes the
    counters, and so the limits, of a tenant still being served."""

    async def delete(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant not in offboarded():
            return web.json_response(
                {"error": f"tenant {tenant!r} is not offboarded in the serving config; its counters stay"},
                status=409)
        deleted = await purge(backend, tenant)
        return web.json_response({"tenant": tenant, "backend": backend.name, "deleted": deleted})

    app.router.add_delete(ROUTE, delete)
