"""The control plane's small HTTP face: health, status (config version, NACKs), and the JWKS."""

from __future__ import annotations

from aiohttp import web

from xds_server.controlplane.service import ControlPlane


def status_app(cp: ControlPlane) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok = cp.compiled is not None
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(cp.status())

    async def jwks(_: web.Request) -> web.Response:
        return web.Response(text=cp.jwks, content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_get("/.well-known/jwks.json", jwks)
    return app
