"""The HTTP face of the runtime: OIP v2 REST routes on aiohttp.

Handlers stay thin: gateway checks (``gateway``), request shapes (``protocol``), model lookup
(``models.registry``) and queueing (``scheduling``) each live in their own module. Every error leaves as
``{"error": "...", "code": N}`` with the status that fits, and every response carries ``x-fairshare-replica``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from inference_images.runtime import __version__, tokens
from inference_images.runtime.encoding import BodyEncodingError, content_coding, decode_body
from inference_images.runtime.gateway import (
    BINARY_EXTENSION,
    COST_TOKENS_HEADER,
    EXPECTED_TIMEOUT_HEADER,
    MAX_QUEUE_HEADER,
    MODEL_OWNER_HEADER,
    MODEL_VERSION_HEADER,
    MODEL_VERSIONS_HEADER,
    PII_PSEUDONYMISED_HEADER,
    PII_REDACTED_HEADER,
    REPLICA_HEADER,
    TENANT_HEADER,
    GatewayContext,
    GatewayHeaderError,
    read_gateway_context,
)
from inference_images.runtime.metrics import CONTENT_TYPE, OWN_MODEL, UNKNOWN, RuntimeMetrics
from inference_images.runtime.models.base import Model, Tensor
from inference_images.runtime.models.cache import ModelCache, ModelUnavailableError
from inference_images.runtime.models.head_format import HeadModel
from inference_images.runtime.models.own import BaseUnavailableError, OwnModelRef, resolve_base
from inference_images.runtime.models.registry import ModelEntry, ModelNotFoundError, ModelRepository
from inference_images.runtime.pii import metrics as pii_metrics
from inference_images.runtime.pii.entities import Entity
from inference_images.runtime.pii.keys import KeyRing, KeyUnavailableError
from inference_images.runtime.pii.pseudonyms import Pseudonymiser
from inference_images.runtime.pii.redactor import PiiBlockedError, scrub
from inference_images.runtime.pii.tensors import (
    check_request_fields,
    redact_inputs,
    redact_outputs,
    split,
    summary,
    text_volume,
)
from inference_images.runtime.protocol import (
    HEADER_LENGTH_HEADER,
    InferenceRequest,
    NonFiniteOutputError,
    ProtocolError,
    RequestTooLargeError,
    SizeLimit,
    binary_outputs,
    build_infer_response,
    check_against_model,
    check_limits,
    encode_infer_response,
    error_body,
    model_metadata,
    parse_request_body,
)
from inference_images.runtime.scheduling import (
    BatchItem,
    ClientGoneError,
    DeadlineExceededError,
    QueueFullError,
    Scheduler,
    SchedulerClosedError,
)
from inference_images.runtime.scheduling.admission import parse_deadline, parse_queue_bound
from inference_images.runtime.settings import Settings
from inference_images.runtime.tls import is_gateway
from inference_images.runtime.tokens import Prediction

log = logging.getLogger(__name__)
access_log = logging.getLogger("inference_images.runtime.access")

SERVER_NAME = "fairshare-runtime"
# Probes and scrapes would drown the access log; they are counted elsewhere.
_QUIET_PATHS = ("/v2/health/", "/metrics")
# On a request for a tenant's own model: (its cache's qualified name, the name its caller used).
_OWN_MODEL_NAMES = web.RequestKey("fairshare.own_model_names", tuple[str, str])
# The (model, version) a request resolved to: names the config chose, which the access log may carry.
_SERVED = web.RequestKey("fairshare.served", tuple[str, str])


class ApiError(Exception):
    """An error response: status plus the client-facing message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(slots=True)
class RuntimeState:
    settings: Settings
    repository: ModelRepository
    scheduler: Scheduler
    metrics: RuntimeMetrics
    # Tenants' own models, loaded on first use (None: this replica serves the catalog only).
    cache: ModelCache | None = None
    # Set on shutdown so readiness fails and the gateway stops sending while in-flight work finishes.
    draining: bool = False
    # Tenants' pseudonymisation keys (None: no source configured; pseudonymising requests get 503).
    keys: KeyRing | None = None


STATE = web.AppKey("state", RuntimeState)


def build_app(state: RuntimeState) -> web.Application:
    middlewares: list[Any] = [_error_middleware]
    if state.settings.tls is not None:
        middlewares.insert(0, _gateway_only)
    app = web.Application(client_max_size=state.settings.max_body_bytes, middlewares=middlewares)
    app[STATE] = state
    app.router.add_get("/v2/health/live", _live)
    app.router.add_get("/v2/health/ready", _ready)
    app.router.add_get("/v2", _server_metadata)
    app.router.add_get("/v2/models/{model}", _model_metadata)
    app.router.add_get("/v2/models/{model}/versions/{version}", _model_metadata)
    app.router.add_get("/v2/models/{model}/ready", _model_ready)
    app.router.add_get("/v2/models/{model}/versions/{version}/ready", _model_ready)
    app.router.add_post("/v2/models/{model}/infer", _infer)
    app.router.add_post("/v2/models/{model}/versions/{version}/infer", _infer)
    app.router.add_get("/metrics", _metrics)
    return app


def build_health_app(state: RuntimeState) -> web.Application:
    """Liveness and readiness alone, in plaintext, for kubelet (which holds no client certificate): the
    same answers as the data-plane port's, and nothing a tenant header could steer."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/v2/health/live", _live)
    app.router.add_get("/v2/health/ready", _ready)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _gateway_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With mutual TLS on, the handshake already required a certificate from the platform CA; this
    keeps out the CA's other holders (another runtime's server certificate), so only the gateway's
    headers are ever acted on."""
    settings = request.app[STATE].settings
    assert settings.tls is not None
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    if not is_gateway(peercert, settings.tls.client_identity):
        return _error(403, f"only the gateway ({settings.tls.client_identity}) may call this runtime")
    return await handler(request)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    start = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        # Messages may quote request data (an input's name, a bad field): never echo raw PII.
        response = _error(exc.status, scrub(_as_the_tenant_names_it(request, exc.message)), exc.headers)
    except web.HTTPException as exc:
        # aiohttp's own refusals (no route, wrong method, body too large) in the OIP error shape.
        if exc.status < 400:
            raise
        response = _error(exc.status, scrub(_describe_http_error(request, exc)))
    except Exception as exc:
        # The message may quote request data, so only the type is logged.
        log.error("unhandled error", extra={"route": _route_of(request), "error_type": type(exc).__name__})
        response = _error(500, "internal error")
    response.headers[REPLICA_HEADER] = state.settings.replica
    if state.settings.access_log and not request.path.startswith(_QUIET_PATHS):
        # Who (the tenant Envoy verified; absent on calls that did not come through it), method, route and
        # status only: bodies and query strings may carry personal data (policy/retention keeps these lines).
        # Not the path either, as in Envoy's access log: a client writes it, and a scrubber's patterns miss
        # a name, or a number glued to a separator. The model and version are logged once resolved to ones
        # this replica serves, so they are names the config chose.
        model, version = request.get(_SERVED, (None, None))
        access_log.info(
            "request",
            extra={
                "tenant": request.headers.get(TENANT_HEADER),
                "method": request.method,
                "route": _route_of(request),
                "model": model,
                "version": version,
                "status": response.status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            },
        )
    return response


def _route_of(request: web.Request) -> str:
    """The route template a request matched (`/v2/models/{model}/infer`), or `other`: one of a fixed few."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


def _as_the_tenant_names_it(request: web.Request, message: str) -> str:
    """A tenant's own model is 'owner:name' in this replica's cache, its index and its log (one cache holds
    every tenant's); its caller named it 'name', and is told of it so."""
    names = request.get(_OWN_MODEL_NAMES)
    if names is None:
        return message
    qualified, name = names
    return message.replace(f"'{qualified}'", f"'{name}'")


def _describe_http_error(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no route for {request.method} {request.path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"method {request.method} is not allowed on {request.path}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"request body is larger than {request.app[STATE].settings.max_body_bytes} bytes"
    return exc.reason


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(message, status), status=status, headers=headers)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def _ready(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return web.json_response({"ready": False, "reasons": {"server": "draining"}}, status=503)
    reasons = state.repository.not_ready()
    if reasons:
        return web.json_response({"ready": False, "reasons": reasons}, status=503)
    return web.json_response({"ready": True})


async def _server_metadata(request: web.Request) -> web.Response:
    settings = request.app[STATE].settings
    return web.json_response(
        {
            "name": SERVER_NAME,
            "version": __version__,
            "extensions": [BINARY_EXTENSION],
            "region": settings.region,
            "pool": settings.pool,
            "replica": settings.replica,
        }
    )


def _resolve(request: web.Request, header_version: str | None) -> ModelEntry:
    """The model a request addresses: the gateway's version header (the version its route picked: the
    tenant's split, or the granted version the path pins), else the version in the path, else the default
    (highest). Through the gateway a path naming another version is one the tenant was not granted (its
    request reached the split's route), so it is the 404 of a version that does not exist, naming none of
    the versions this replica serves: they are other tenants' business."""
    repository = request.app[STATE].repository
    path_version = request.match_info.get("version")
    if header_version is not None and path_version is not None and path_version != header_version:
        raise ApiError(404, f"unknown version '{path_version}' of model '{request.match_info['model']}'")
    version = path_version or header_version
    try:
        entry = repository.resolve(request.match_info["model"], version)
    except ModelNotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    request[_SERVED] = (entry.spec.name, entry.spec.version)
    return entry


def _own_ref(request: web.Request, context: GatewayContext | None = None) -> tuple[OwnModelRef, float] | None:
    """The tenant's own model this request addresses (with the tenant's weight), or None for the catalog.

    Everything comes from the route's headers (docs/design/0003); a version in the path must be the one
    the route's split picked, since the artefact header is that version's."""
    state = request.app[STATE]
    if context is None:
        if MODEL_OWNER_HEADER not in request.headers:
            return None  # a catalog model's metadata needs no gateway headers
        context = _gateway_context(request)
    own = context.own_model
    if own is None:
        return None
    name = request.match_info["model"]
    path_version = request.match_info.get("version")
    if path_version is not None and context.model_version is not None and path_version != context.model_version:
        raise ApiError(404, f"unknown version '{path_version}' of model '{name}'")
    try:
        ref = OwnModelRef.parse(
            owner=own.owner,
            name=name,
            version=context.model_version or path_version,
            format=own.format,
            artifact=own.artifact,
            sha256=own.sha256,
            base=own.base,
            size=own.bytes,
        )
    except ValueError as exc:
        raise ApiError(400, f"gateway headers for an own model: {exc}") from None
    request[_OWN_MODEL_NAMES] = (ref.qualified, ref.name)
    # The gateway's route for this tenant's model set these headers: the names are the config's.
    request[_SERVED] = (ref.name, ref.version)
    if state.cache is None:
        raise ApiError(503, f"model '{name}': this replica has no model cache for tenants' own models")
    return ref, context.weight


def _gateway_context(request: web.Request) -> GatewayContext:
    state = request.app[STATE]
    try:
        return read_gateway_context(
            request.headers, own_region=state.settings.region, allow_anonymous=state.settings.allow_anonymous
        )
    except GatewayHeaderError as exc:
        raise ApiError(exc.status, exc.message) from None


async def _acquire(state: RuntimeState, ref: OwnModelRef, weight: float) -> Model:
    """The resident own model, loaded if needed: the request waits here, holding no scheduler slot."""
    assert state.cache is not None
    try:
        if ref.base is not None:
            resolve_base(state.repository, ref)  # a head over a base this replica cannot run: 503 at once
        return await state.cache.acquire(ref, weight)
    except BaseUnavailableError as exc:
        raise ApiError(503, str(exc)) from None
    except ModelUnavailableError as exc:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))} if exc.retry_after_s else None
        raise ApiError(503, exc.reason, headers) from None


async def _own_model_metadata(request: web.Request, ref: OwnModelRef, weight: float) -> web.Response:
    model = await _acquire(request.app[STATE], ref, weight)
    listed = [v for v in request.headers.get(MODEL_VERSIONS_HEADER, "").split(",") if v]
    body = model_metadata(model, listed if ref.version in listed else [ref.version])
    body["name"] = ref.name  # the tenant's own name, not the cache's qualified one
    body["device"] = model.device
    # The digest lets the tenant confirm which bytes serve it; the URI would show the platform's bucket
    # layout or a replica's file paths, which are the operators' business (`fairshare models`).
    body["artifact"] = {"sha256": ref.artifact.sha256}
    if ref.base is not None:
        body["base"] = str(ref.base)
    return web.json_response(body)


async def _model_metadata(request: web.Request) -> web.Response:
    own = _own_ref(request)
    if own is not None:
        return await _own_model_metadata(request, *own)
    entry = _resolve(request, request.headers.get(MODEL_VERSION_HEADER) or None)
    versions = request.app[STATE].repository.versions(entry.spec.name)
    granted = request.headers.get(MODEL_VERSIONS_HEADER)
    if granted is not None:
        # Through the gateway: the tenant's granted versions only; the rest are other tenants' business.
        allowed = set(granted.split(","))
        versions = [v for v in versions if v in allowed]
    body = model_metadata(entry.model, versions)
    # Beyond OIP's fields (clients ignore extras): where it runs and which verified artifact it runs from.
    body["device"] = entry.model.device
    if entry.spec.artifact is not None:
        body["artifact"] = {"uri": entry.spec.artifact.uri, "sha256": entry.spec.artifact.sha256}
    return web.json_response(body)


async def _model_ready(request: web.Request) -> web.Response:
    own = _own_ref(request)
    if own is not None:
        ref, weight = own
        # Ready means "can serve now": a cold model is loaded first, so a client's readiness check before
        # its first call (tritonclient's is_model_ready) does not fail for a model that would serve.
        try:
            await _acquire(request.app[STATE], ref, weight)
        except ApiError as exc:
            if exc.status != 503:
                raise
            return web.json_response({"name": ref.name, "version": ref.version, "ready": False,
                                      "reason": _as_the_tenant_names_it(request, exc.message)},
                                     status=503, headers=exc.headers)
        return web.json_response({"name": ref.name, "version": ref.version, "ready": True})
    entry = _resolve(request, request.headers.get(MODEL_VERSION_HEADER) or None)
    body: dict[str, Any] = {"name": entry.spec.name, "version": entry.spec.version, "ready": entry.ready}
    if not entry.ready:
        body["reason"] = entry.describe()
    return web.json_response(body, status=200 if entry.ready else 503)


async def _infer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    start = time.perf_counter()
    model_label, version_label = UNKNOWN, UNKNOWN
    status = 500
    try:
        context = _gateway_context(request)
        own = _own_ref(request, context)
        if own is None:
            entry = _resolve(request, context.model_version)
            model = entry.model
            model_label, version_label = entry.spec.name, entry.spec.version
        else:
            # One label for every own model: per model only the top ones are named (metrics.TOP_MODELS).
            model_label = version_label = OWN_MODEL

        try:
            coding = content_coding(request.headers.get(hdrs.CONTENT_ENCODING))
        except BodyEncodingError as exc:
            raise ApiError(exc.status, exc.message) from None  # before the body is read
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, f"request body is larger than {state.settings.max_body_bytes} bytes") from None
        except RequestPayloadError as exc:
            # Cut short or malformed in transit (a chunk size that is not one): the client's, not a 500.
            raise ApiError(400, f"request body could not be read: {exc}") from None
        # A catalog model's limits are known now: a request too large for it is refused from its shapes,
        # before its data is walked. An own model's are known once it is loaded, after the body parsed.
        size_limit = SizeLimit(model.name, state.settings.limits_for(model)) if own is None else None
        parse = functools.partial(_parse_body, body, coding, request.headers.get(HEADER_LENGTH_HEADER),
                                  state.settings.max_body_bytes, size_limit)
        try:
            # A compressed body may decode to many times its size: decoded off the event loop too.
            large = len(body) > _INLINE_PARSE_BYTES or coding is not None
            infer_request = await asyncio.to_thread(parse) if large else parse()
        except BodyEncodingError as exc:
            raise ApiError(exc.status, exc.message) from None
        except RequestTooLargeError as exc:
            raise ApiError(413, str(exc)) from None
        except ProtocolError as exc:
            raise ApiError(400, str(exc)) from None
        if own is None:
            # Re-read: the entry above is a snapshot and loading may have finished since.
            entry = state.repository.resolve(entry.spec.name, entry.spec.version)
            if not entry.ready:
                raise ApiError(503, f"model '{model.name}' version '{model.version}' is not ready ({entry.describe()})")
        else:
            # After the body parsed: a malformed request never costs a load.
            model = await _acquire(state, *own)
        limits = state.settings.limits_for(model)
        try:
            check_against_model(infer_request, model)
            check_limits(infer_request, model, limits)
        except RequestTooLargeError as exc:
            raise ApiError(413, str(exc)) from None
        except ProtocolError as exc:
            raise ApiError(400, str(exc)) from None

        # Before the scheduler, the model or any log sees the text: the tenant's PII rules.
        inputs, pii_counts, pseudonyms = await _redact_request(state, context, infer_request)
        try:
            max_queue = parse_queue_bound(request.headers.get(MAX_QUEUE_HEADER))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            prediction = await _run(
                state,
                context,
                model,
                inputs,
                max_queue=max_queue,
                deadline=parse_deadline(request.headers.get(EXPECTED_TIMEOUT_HEADER), time.monotonic()),
                gone=functools.partial(_client_gone, request),
                chunk_rows=limits.chunk_rows,
            )
            outputs, cost_tokens = prediction.outputs, prediction.tokens
        except QueueFullError as exc:
            status = 429
            return _error(429, str(exc), {"Retry-After": str(exc.retry_after_s)})
        except DeadlineExceededError as exc:
            raise ApiError(504, str(exc)) from None
        except ClientGoneError as exc:
            raise ApiError(499, str(exc)) from None
        except SchedulerClosedError:
            raise ApiError(503, "replica is shutting down") from None
        except Exception as exc:
            log.error(
                "inference failed",
                extra={"model": model.name, "version": model.version, "error_type": type(exc).__name__},
            )
            raise ApiError(500, f"inference failed in model '{model.name}' version '{model.version}'") from None

        outputs, out_counts = redact_outputs(outputs, context.pii, pseudonyms)
        _record(state, context, out_counts, pii_metrics.RESPONSE)
        response = build_infer_response(model, infer_request.id or uuid.uuid4().hex, outputs, infer_request.outputs)
        if own is not None:
            response["model_name"] = own[0].name  # the tenant's own name, not the cache's qualified one
        try:
            encoded = encode_infer_response(response, binary_outputs(infer_request, (o.name for o in outputs)))
        except NonFiniteOutputError as exc:
            log.error("non-finite model output", extra={"model": model.name, "version": model.version})
            raise ApiError(500, str(exc)) from None
        status = 200
        reply = web.Response(body=encoded.body, content_type=encoded.content_type)
        if encoded.header_length is not None:
            reply.headers[HEADER_LENGTH_HEADER] = str(encoded.header_length)
        reply.headers[COST_TOKENS_HEADER] = str(cost_tokens)
        redacted, pseudonymised = (summary(c) for c in split(pii_counts + out_counts, context.pii))
        if redacted:
            reply.headers[PII_REDACTED_HEADER] = redacted
        if pseudonymised:
            reply.headers[PII_PSEUDONYMISED_HEADER] = pseudonymised
        return reply
    except ApiError as exc:
        status = exc.status
        raise
    finally:
        state.metrics.requests.labels(model_label, version_label, str(status)).inc()
        if status == 200:
            state.metrics.latency.labels(model_label, version_label).observe(time.perf_counter() - start)


def _parse_body(body: bytes, coding: str | None, header_length: str | None, max_bytes: int,
                size_limit: SizeLimit | None) -> InferenceRequest:
    decoded = decode_body(body, coding, max_bytes) if coding is not None else body
    return parse_request_body(decoded, header_length, size_limit=size_limit)


async def _run(
    state: RuntimeState,
    context: GatewayContext,
    model: Model,
    inputs: dict[str, Tensor],
    *,
    max_queue: int | None,
    deadline: float | None,
    gone: Callable[[], bool],
    chunk_rows: int | None,
) -> Prediction:
    """Queue the request's model work. A head model is two pieces of work for the tenant: its base,
    batched with every other request for that base (catalog or head, any tenant), then its head."""
    base = model.base if isinstance(model, HeadModel) else model
    prediction: Prediction = await state.scheduler.submit(
        context.tenant,
        context.weight,
        base.cost_hint(inputs),
        functools.partial(tokens.predict, base, inputs),
        max_queue=max_queue,
        deadline=deadline,
        gone=gone,
        batch=BatchItem(base, inputs, chunk_rows),
    )
    if not isinstance(model, HeadModel):
        return prediction
    outputs: list[Tensor] = await state.scheduler.submit(
        context.tenant,
        context.weight,
        model.head_cost(prediction.outputs),
        functools.partial(model.apply_head, prediction.outputs),
        max_queue=max_queue,
        deadline=deadline,
        gone=gone,
    )
    return Prediction(outputs, prediction.tokens)


# Past this many characters, redaction (about 1 ms per KiB of PII-dense text) runs on a thread, so one
# large request does not hold the event loop that every other request needs.
_INLINE_REDACT_CHARS = 32 * 1024
# Past this many bytes, a body is parsed and validated on a thread too (tens of milliseconds per MiB).
_INLINE_PARSE_BYTES = 64 * 1024


async def _redact_request(
    state: RuntimeState, context: GatewayContext, request: InferenceRequest
) -> tuple[dict[str, Tensor], Counter[Entity], Pseudonymiser | None]:
    """Apply the tenant's PII rules to the request's text (its inputs' data and parameters; its own id and
    parameters and its requested outputs' names and parameters are held to the block); a blocked type is
    a 422 naming the type only.
    Also returns the tenant's key when its rules pseudonymise, for the response's scan."""
    inputs = request.input_map()
    if not context.pii.active:
        return inputs, Counter(), None
    pseudonyms = await _pseudonymiser(state, context) if context.pii.pseudonymise else None

    requested = request.outputs or ()

    def work() -> tuple[dict[str, Tensor], Counter[Entity]]:
        check_request_fields(request.id, request.parameters, context.pii, requested)
        return redact_inputs(inputs, context.pii, pseudonyms)

    fields = (request.id, request.parameters, *(o.name for o in requested), *(o.parameters for o in requested))
    try:
        if text_volume(inputs, *fields) > _INLINE_REDACT_CHARS:
            redacted, counts = await asyncio.to_thread(work)
        else:
            redacted, counts = work()
    except PiiBlockedError as exc:
        # Blocked requests count once per type: nothing past the first finding is looked at.
        state.metrics.pii.record(context.tenant, Counter(exc.entities), pii_metrics.BLOCKED, pii_metrics.REQUEST)
        raise ApiError(422, str(exc)) from None
    _record(state, context, counts, pii_metrics.REQUEST)
    return redacted, counts, pseudonyms


def _record(state: RuntimeState, context: GatewayContext, counts: Counter[Entity], stage: str) -> None:
    redacted, pseudonymised = split(counts, context.pii)
    state.metrics.pii.record(context.tenant, redacted, pii_metrics.REDACTED, stage)
    state.metrics.pii.record(context.tenant, pseudonymised, pii_metrics.PSEUDONYMISED, stage)


async def _pseudonymiser(state: RuntimeState, context: GatewayContext) -> Pseudonymiser:
    """The tenant's key, or a 503 that names the tenant and where its key should be: a request whose
    rules pseudonymise is never served without it (neither raw nor with placeholders instead)."""
    types = ", ".join(sorted(context.pii.pseudonymise))
    if state.keys is None:
        raise ApiError(503, f"tenant '{context.tenant}' has {types} pseudonymised, but this replica has no "
                       "pseudonymisation key source (--pseudonymisation-keys); nothing was processed")
    pseudonyms = state.keys.cached(context.tenant)
    if pseudonyms is not None:
        return pseudonyms
    try:
        # Secrets Manager (or the disk) blocks: off the event loop, one read per tenant at a time.
        return await asyncio.to_thread(state.keys.get, context.tenant)
    except KeyUnavailableError as exc:
        raise ApiError(503, f"tenant '{context.tenant}' has {types} pseudonymised, but {exc}; nothing was "
                       "processed", {"Retry-After": str(max(1, math.ceil(state.keys.retry_s)))}) from None


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = state.metrics.render(state.repository, state.scheduler.queue_depth(), state.cache)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
