"""The OIP model-repository extension on the admin port: list, load and unload models.

Its own small aiohttp app on ``--admin-port``, never routes on the data-plane app: no Envoy cluster points
at this port, so a tenant calling ``/v2/repository/...`` through the gateway gets the gateway's 404, and
only operators and the control plane (``fairshare models``, unloading a removed model) reach it.

- ``POST /v2/repository/index`` (body optional, ``{"ready": true}`` lists only ready models): every model
  of this replica, catalog (``pinned``) and tenants' own (by qualified name ``owner:name``), each with
  version, state, reason, owner, format, bytes (measured footprint), hits, misses and load seconds.
- ``POST /v2/repository/models/{name}/load``, body ``{"parameters": {"artifact", "sha256", "format",
  "base", "version", "owner"}}``: load an own model now (``name`` is ``owner:name``, or ``name`` with
  ``owner`` in the parameters); 200 once resident, 503 with the reason when it cannot be.
- ``POST /v2/repository/artifacts/purge`` (``{"sha256": [...]}``, not OIP): remove those artefacts' verified
  copies from this replica's disk cache (offboarding).
- ``POST /v2/repository/models/{name}/unload`` (optional ``{"parameters": {"version": "3"}}``): drop every
  (or that) version of an own model; catalog models are pinned (400).

With the runtime's TLS (``--tls-dir``) the port serves the data plane's context (certificate, rotation and
the platform CA's client check shared) and answers only a client certificate naming the control plane
(``--tls-admin-client-name``); the gateway's certificate, valid on the data-plane port, gets 403 here.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from inference_images.runtime.models.artifacts import ArtifactStore
from inference_images.runtime.models.cache import ModelCache, ModelUnavailableError
from inference_images.runtime.models.own import BaseUnavailableError, OwnModelRef, resolve_base
from inference_images.runtime.models.registry import ModelNotFoundError, ModelRepository
from inference_images.runtime.protocol import error_body
from inference_images.runtime.tls import is_peer


@dataclass(slots=True)
class AdminState:
    repository: ModelRepository
    cache: ModelCache | None
    # The name a client certificate must carry (mutual TLS on); None: plaintext, reachable only by the
    # control plane through the admin NetworkPolicy.
    client_identity: str | None = None
    # The verified artefact copies on this replica's disk (purged when a tenant is offboarded).
    store: ArtifactStore | None = None


ADMIN = web.AppKey("admin", AdminState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def build_admin_app(state: AdminState) -> web.Application:
    middlewares: list[Any] = [_errors]
    if state.client_identity is not None:
        middlewares.insert(0, _control_plane_only)
    app = web.Application(client_max_size=64 * 1024, middlewares=middlewares)
    app[ADMIN] = state
    app.router.add_post("/v2/repository/index", _index)
    app.router.add_post("/v2/repository/models/{name}/load", _load)
    app.router.add_post("/v2/repository/models/{name}/unload", _unload)
    app.router.add_post("/v2/repository/artifacts/purge", _purge)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Refused as exc:
        return web.json_response(error_body(exc.message, exc.status), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(error_body(f"{exc.reason}: {request.method} {request.path}", exc.status),
                                 status=exc.status)


@web.middleware
async def _control_plane_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handshake admitted any certificate of the platform CA; loading and unloading tenants' models is
    the control plane's alone, not the gateway's or a runtime's."""
    identity = request.app[ADMIN].client_identity
    assert identity is not None
    transport = request.transport
    if not is_peer(transport.get_extra_info("peercert") if transport is not None else None, identity):
        return web.json_response(
            error_body(f"only the control plane ({identity}) may call the repository extension", 403), status=403)
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise _Refused(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Refused(400, "request body must be a JSON object")
    return doc


def _parameters(doc: dict[str, Any]) -> dict[str, Any]:
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _Refused(400, "field 'parameters' must be an object")
    for key, value in parameters.items():
        if value is not None and not isinstance(value, str):
            raise _Refused(400, f"parameter '{key}' must be a string")
    return parameters


async def _index(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    doc = await _body(request)
    only_ready = doc.get("ready") is True
    rows: list[dict[str, Any]] = []
    for entry in state.repository.entries():
        rows.append(
            {
                "name": entry.spec.name,
                "version": entry.spec.version,
                "owner": None,
                "state": entry.state.value,
                "reason": entry.reason,
                "format": entry.spec.loader,
                "bytes": int(getattr(entry.model, "footprint_bytes", 0) or 0),
                "hits": None,
                "misses": None,
                "load_seconds": None,
                "pinned": True,
            }
        )
    if state.cache is not None:
        rows.extend({**asdict(row), "pinned": False} for row in state.cache.index())
    if only_ready:
        rows = [row for row in rows if row["state"] == "ready"]
    return web.json_response(rows)


def _split_name(name: str, parameters: dict[str, Any]) -> tuple[str | None, str]:
    owner, sep, model = name.partition(":")
    if not sep:
        return parameters.get("owner"), name
    if parameters.get("owner") not in (None, owner):
        raise _Refused(400, f"model '{name}' is owned by '{owner}' but parameter 'owner' says '{parameters['owner']}'")
    return owner, model


async def _load(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    parameters = _parameters(await _body(request))
    owner, name = _split_name(request.match_info["name"], parameters)
    if owner is None:
        return _catalog_state(state.repository, name)
    if state.cache is None:
        raise _Refused(503, "this replica has no model cache for tenants' own models")
    try:
        ref = OwnModelRef.parse(
            owner=owner,
            name=name,
            version=parameters.get("version"),
            format=parameters.get("format"),
            artifact=parameters.get("artifact"),
            sha256=parameters.get("sha256"),
            base=parameters.get("base"),
        )
        if ref.base is not None:
            resolve_base(state.repository, ref)
        await state.cache.acquire(ref, operator=True)
    except ValueError as exc:
        raise _Refused(400, str(exc)) from None
    except BaseUnavailableError as exc:
        raise _Refused(503, str(exc)) from None
    except ModelUnavailableError as exc:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))} if exc.retry_after_s else None
        raise _Refused(503, exc.reason, headers) from None
    row = next(r for r in state.cache.index() if r.name == ref.qualified and r.version == ref.version)
    return web.json_response({**asdict(row), "pinned": False})


def _catalog_state(repository: ModelRepository, name: str) -> web.Response:
    try:
        entry = repository.resolve(name)
    except ModelNotFoundError as exc:
        raise _Refused(404, f"{exc}; a tenant's own model is named owner:name") from None
    body = {"name": name, "state": "ready" if entry.ready else entry.state.value, "pinned": True}
    if not entry.ready:
        raise _Refused(503, f"catalog model '{name}' is {entry.describe()}")
    return web.json_response(body)


async def _unload(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    parameters = _parameters(await _body(request))
    owner, name = _split_name(request.match_info["name"], parameters)
    if owner is None:
        try:
            state.repository.resolve(name)
        except ModelNotFoundError as exc:
            raise _Refused(404, str(exc)) from None
        raise _Refused(400, f"catalog model '{name}' is pinned: loaded at start, never unloaded")
    if state.cache is None or not state.cache.known(owner, name):
        raise _Refused(404, f"model '{owner}:{name}' is not loaded on this replica")
    dropped = state.cache.unload(owner, name, parameters.get("version"))
    return web.json_response({"name": f"{owner}:{name}", "unloaded": dropped})


async def _purge(request: web.Request) -> web.Response:
    """Not part of OIP: remove the verified copies of artefacts by sha256 from this replica's disk cache
    (``{"sha256": ["<64 hex>", ...]}``); answers what was purged, absent, or busy (still being read)."""
    state = request.app[ADMIN]
    doc = await _body(request)
    digests = doc.get("sha256")
    if not isinstance(digests, list) or not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in digests):
        raise _Refused(400, "body must be {\"sha256\": [\"<64 lowercase hex>\", ...]}")
    if state.store is None:
        return web.json_response({"purged": [], "absent": sorted(set(digests)), "busy": []})
    return web.json_response(await asyncio.to_thread(state.store.purge, digests))


_SHA256 = re.compile(r"[0-9a-f]{64}")

__all__ = ["ADMIN", "AdminState", "build_admin_app"]
