"""Envoy's rate-limit service (envoy.service.ratelimit.v3 ShouldRateLimit) over one limiter backend.

Each descriptor names a region, tenant, tier, model and limit kind (xds_server/compiler/ratelimits.py
writes them into every tenant route). The service looks the tenant up in the limit table published with
the current snapshot, turns each descriptor into a GCRA hit, and answers OK or OVER_LIMIT with
Retry-After and the IETF RateLimit-Policy / RateLimit headers. If the backend cannot answer, the
tenant's tier decides: fail open (OK) or fail closed (UNAVAILABLE, which Envoy turns into 503).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as descriptor_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import duration_pb2

from xds_server.config.model import FailureMode
from xds_server.ratelimit import limits as lim
from xds_server.ratelimit.backends import Backend, BackendUnavailable, Decision, Hit
from xds_server.ratelimit.metrics import Outcome, RateLimitMetrics

log = logging.getLogger("fairshare.ratelimit")

_OK = rls_pb2.RateLimitResponse.OK
_OVER = rls_pb2.RateLimitResponse.OVER_LIMIT
_UNIT = {1.0: rls_pb2.RateLimitResponse.RateLimit.SECOND, 60.0: rls_pb2.RateLimitResponse.RateLimit.MINUTE}


@dataclass(frozen=True, slots=True)
class _Check:
    """One descriptor the table knows: which limit it hits, and how hard."""

    tenant: lim.TenantLimits
    kind: lim.Kind
    hit: Hit
    real_cost: float = 0.0  # a settlement's cost as the runtime reported it


class RateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, backend: Backend, metrics: RateLimitMetrics | None = None) -> None:
        self.backend = backend
        self.metrics = metrics or RateLimitMetrics()
        self.table = lim.LimitTable()
        self.metrics.backend_up.labels(backend.name).set(1)

    def publish(self, table: lim.LimitTable) -> None:
        """Swap in the limits of a newly published snapshot: one reference assignment, so every call
        decides against one whole table, old or new."""
        self.table = table
        self.metrics.table_tenants.set(len(table.tenants))
        log.info("rate limits version %s published (%d tenants)", table.version, len(table.tenants))

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext,
    ) -> rls_pb2.RateLimitResponse:
        started = time.perf_counter()
        try:
            return await self.decide(request, context)
        finally:
            self.metrics.latency.labels(self.backend.name).observe(time.perf_counter() - started)

    async def decide(self, request: rls_pb2.RateLimitRequest,
                     context: grpc.aio.ServicerContext | None = None) -> rls_pb2.RateLimitResponse:
        table = self.table
        checks: list[_Check | None] = [_check(table, d, request.hits_addend) for d in request.descriptors]
        known = [c for c in checks if c is not None]
        if not known:
            return rls_pb2.RateLimitResponse(overall_code=_OK, statuses=[_status_ok() for _ in checks])
        tenant = known[0].tenant
        try:
            decisions = await self.backend.do_limit([c.hit for c in known])
        except BackendUnavailable as err:
            return await self._unavailable(tenant, known, err, context)
        self.metrics.backend_up.labels(self.backend.name).set(1)
        return self._answer(tenant, checks, known, decisions)

    def _answer(self, tenant: lim.TenantLimits, checks: Sequence[_Check | None], known: Sequence[_Check],
                decisions: Sequence[Decision]) -> rls_pb2.RateLimitResponse:
        by_check = dict(zip((id(c) for c in known), decisions, strict=True))
        refused = [(c, by_check[id(c)]) for c in known if not by_check[id(c)].allowed]
        for c in known:
            if c.hit.settle:
                self.metrics.settled_tokens.labels(c.tenant.tenant).inc(c.real_cost)
        admitted_checks = [c for c in known if not c.hit.settle]
        if not admitted_checks:  # a settlement alone: nothing to decide
            return rls_pb2.RateLimitResponse(overall_code=_OK, statuses=[_status_ok() for _ in checks])
        # `allowed` counts each limit a request passed; `limited` / `shadow_limited` the limits that
        # refused it (in shadow mode the request is served, and, as when enforced, spends nothing).
        if refused:
            outcome = Outcome.SHADOW_LIMITED if tenant.shadow else Outcome.LIMITED
            for c, _ in refused:
                self.metrics.decisions.labels(tenant.tenant, c.kind, outcome).inc()
        if tenant.shadow:
            refused = []
        if not refused:
            for c in admitted_checks:
                self.metrics.decisions.labels(tenant.tenant, c.kind, Outcome.ALLOWED).inc()
        statuses = []
        for maybe in checks:
            if maybe is None:
                statuses.append(_status_ok())
                continue
            c, d = maybe, by_check[id(maybe)]
            limit = c.tenant.of(c.kind)
            statuses.append(rls_pb2.RateLimitResponse.DescriptorStatus(
                code=_OVER if (not d.allowed and not tenant.shadow and not c.hit.settle) else _OK,
                current_limit=rls_pb2.RateLimitResponse.RateLimit(
                    name=f"{c.tenant.tenant}/{c.kind}", requests_per_unit=max(1, math.floor(limit.rate)),
                    unit=_UNIT.get(limit.period_s, rls_pb2.RateLimitResponse.RateLimit.UNKNOWN)),
                limit_remaining=d.remaining,
                duration_until_reset=_duration_us(d.wait_us if not d.allowed else d.reset_us),
            ))
        headers = _headers(admitted_checks, by_check, refused)
        return rls_pb2.RateLimitResponse(overall_code=_OVER if refused else _OK, statuses=statuses,
                                         response_headers_to_add=headers)

    async def _unavailable(self, tenant: lim.TenantLimits, known: Sequence[_Check], err: BackendUnavailable,
                           context: grpc.aio.ServicerContext | None) -> rls_pb2.RateLimitResponse:
        self.metrics.backend_up.labels(self.backend.name).set(0)
        for c in known:
            if c.hit.settle:
                self.metrics.lost_settlements.labels(tenant.tenant).inc()
        checks = [c for c in known if not c.hit.settle]
        if not checks:
            return rls_pb2.RateLimitResponse(overall_code=_OK)
        closed = tenant.failure_mode is FailureMode.CLOSED
        for c in checks:
            self.metrics.decisions.labels(
                tenant.tenant, c.kind, Outcome.FAILURE_CLOSED if closed else Outcome.FAILURE_OPEN).inc()
        if not closed:
            return rls_pb2.RateLimitResponse(overall_code=_OK)
        message = f"rate-limit backend unavailable ({err}); tier {tenant.tier} fails closed"
        if context is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        raise BackendUnavailable(message)


def _check(table: lim.LimitTable, descriptor: descriptor_pb2.RateLimitDescriptor, request_hits: int) -> _Check | None:
    """The hit a descriptor stands for, or None for a descriptor this table does not limit (unknown
    tenant or kind; a route compiled before the tenant left): such a descriptor is always OK."""
    entries = {e.key: e.value for e in descriptor.entries}
    tenant = table.get(entries.get(lim.TENANT, ""))
    try:
        kind = lim.Kind(entries.get(lim.LIMIT, ""))
    except ValueError:
        return None
    if tenant is None:
        return None
    hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else (request_hits or 1)
    limit = tenant.of(kind)
    key = f"fs:{entries.get(lim.REGION, '')}:{tenant.tenant}:{kind}"
    reserved = entries.get(lim.RESERVED)
    settle = reserved is not None
    cost = float(hits)
    if settle:
        try:
            cost -= float(reserved or 0)  # charge the real cost, refund the reservation
        except ValueError:
            return None
    return _Check(tenant, kind, Hit(key, limit.interval_s * 1e6, limit.tolerance_s * 1e6, cost, settle),
                  real_cost=float(hits) if settle else 0.0)


def _headers(checks: Sequence[_Check], by_check: dict[int, Decision],
             refused: Sequence[tuple[_Check, Decision]]) -> list[base_pb2.HeaderValue]:
    """IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers): the policies that apply, and the
    tightest one's remaining quota and seconds until it resets; Retry-After when refused."""
    policy = ", ".join(c.tenant.of(c.kind).policy(c.kind) for c in checks)
    if refused:
        wait_s = max(d.wait_us for _, d in refused) / 1e6
        tight, d = max(refused, key=lambda cd: cd[1].wait_us)
        retry = str(max(1, math.ceil(wait_s)))
        return [base_pb2.HeaderValue(key="ratelimit-policy", value=policy),
                base_pb2.HeaderValue(key="ratelimit", value=f'"{tight.kind}";r=0;t={retry}'),
                base_pb2.HeaderValue(key="retry-after", value=retry)]
    tight, d = min(((c, by_check[id(c)]) for c in checks), key=lambda cd: cd[1].remaining)
    reset = max(0, math.ceil(d.reset_us / 1e6))
    return [base_pb2.HeaderValue(key="ratelimit-policy", value=policy),
            base_pb2.HeaderValue(key="ratelimit", value=f'"{tight.kind}";r={d.remaining};t={reset}')]


def _status_ok() -> rls_pb2.RateLimitResponse.DescriptorStatus:
    return rls_pb2.RateLimitResponse.DescriptorStatus(code=_OK)


def _duration_us(us: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)
