"""The offboarding's steps that only the control plane's process can do, as routes on its status app:
deleting the tenant's rate-limit counters (it runs the rate-limit service, so only it reaches the memory
backend, and it already holds the Redis client), and recording the offboarding in the audit trail (one
process appends to the hash chain, so a second writer never forks it).

Counter keys are `fs:<region>:<tenant>:<kind>` (xds_server/ratelimit/service.py); region and tenant
names cannot hold a colon, so the tenant's keys are exactly those whose third field is the tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from xds_server.offboard import receipt
from xds_server.ratelimit.backends import Backend
from xds_server.ratelimit.backends.memory import MemoryBackend
from xds_server.ratelimit.backends.redis import RedisBackend

if TYPE_CHECKING:
    from xds_server.controlplane.service import ControlPlane

log = logging.getLogger("fairshare.offboard")

PREFIX = "fs"
COUNTERS = "/offboard/{tenant}/counters"
AUDIT = "/offboard/{tenant}/audit"


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


def add_routes(app: web.Application, cp: ControlPlane, backend_of: Callable[[], Backend | None]) -> None:
    """`DELETE /offboard/<tenant>/counters` and `POST /offboard/<tenant>/audit` (body: the signed receipt).
    Both refuse (409) a tenant the serving config does not mark offboarded, so a typo never wipes the
    counters, and so the limits, of a tenant still being served."""

    def offboarded(request: web.Request) -> str | None:
        tenant = request.match_info["tenant"]
        return tenant if cp.config is not None and tenant in cp.config.offboarded else None

    def refused(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        return web.json_response(
            {"error": f"tenant {tenant!r} is not offboarded in the config this control plane serves"}, status=409)

    async def counters(request: web.Request) -> web.Response:
        tenant = offboarded(request)
        if tenant is None:
            return refused(request)
        backend = backend_of()  # the rate-limit service starts with the first config served
        if backend is None:
            return web.json_response({"tenant": tenant, "backend": None, "deleted": 0,
                                      "note": "rate limiting is off: no counters kept"})
        deleted = await purge(backend, tenant)
        log.info("deleted %d rate-limit counters of offboarded tenant %s", deleted, tenant)
        return web.json_response({"tenant": tenant, "backend": backend.name, "deleted": deleted})

    async def audit(request: web.Request) -> web.Response:
        tenant = offboarded(request)
        if tenant is None:
            return refused(request)
        try:
            body = await request.json()
            signed, steps = str(body["receipt"]), [str(s) for s in body["steps"]]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {\"receipt\": JWS, \"steps\": [...]}"}, status=400)
        if cp.audit is None:
            return web.json_response({"recorded": False, "note": "this control plane keeps no audit trail"})
        # The receipt's digest, not the receipt: the record says which receipt was issued, and holds no
        # more of the tenant than its id and the names of the steps.
        from xds_server.audit import AuditError

        try:
            record = cp.audit.log.append("tenant.offboarded", tenants=[tenant], steps=steps,
                                         receipt_sha256=receipt.digest(signed))
        except AuditError as err:
            return web.json_response({"error": f"the audit log refused the record: {err}"}, status=500)
        return web.json_response({"recorded": True, "seq": record["seq"], "digest": record["digest"]})

    app.router.add_delete(COUNTERS, counters)
    app.router.add_post(AUDIT, audit)
