"""The control plane's small HTTP face: probes, status (config version, NACKs), and the JWKS.

Probes mean what they say: /livez answers from the event loop itself, so it fails only when the loop is
stuck or gone (restart helps); /readyz passes once a valid config is published to the xDS store (Envoy
can be sent here), which a slow first load (OPA not up yet) delays without killing the process.
/healthz is /readyz under its older name (launchers wait on it).
"""

from __future__ import annotations

from aiohttp import web

from xds_server.controlplane.service import ControlPlane


def status_app(cp: ControlPlane) -> web.Application:
    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def readyz(_: web.Request) -> web.Response:
        ready = cp.compiled is not None
        body: dict[str, object] = {"ok": ready, "config_version": cp.compiled.version if cp.compiled else None}
        if not ready and cp.last is not None and cp.last.error:
            # Its first lines: the summary and the first problem (file and field); /status has the whole.
            body["reason"] = " ".join(line.strip() for line in cp.last.error.splitlines()[:2])[:500]
        return web.json_response(body, status=200 if ready else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(cp.status())

    async def jwks(_: web.Request) -> web.Response:
        return web.Response(text=cp.jwks, content_type="application/json")

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/.well-known/jwks.json", jwks)
    return app
