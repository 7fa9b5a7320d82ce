"""The limiter and the service without Envoy: GCRA's bound, all-or-nothing admission, settlement,
shadow mode, the response headers, and each tier's failure mode when Redis is down or stalled."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as desc_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import wrappers_pb2

from xds_server.config.model import FailureMode
from xds_server.ratelimit import limits as lim
from xds_server.ratelimit.backends import BackendUnavailable, Hit
from xds_server.ratelimit.backends.memory import MemoryBackend
from xds_server.ratelimit.backends.redis import RedisBackend
from xds_server.ratelimit.local_redis import RedisServer
from xds_server.ratelimit.service import RateLimitService


class Clock:
    def __init__(self) -> None:
        self.us = 1_000_000.0

    def __call__(self) -> float:
        return self.us

    def advance(self, seconds: float) -> None:
        self.us += seconds * 1e6


def hit(key: str = "k", rate: float = 10, period: float = 1, burst: float = 2, cost: float = 1,
        settle: bool = False) -> Hit:
    limit = lim.Limit(rate, period, burst)
    return Hit(key, limit.interval_s * 1e6, limit.tolerance_s * 1e6, cost, settle)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_gcra_admits_burst_then_exactly_the_rate() -> None:
    clock = Clock()
    backend = MemoryBackend(clock_us=clock)

    async def go() -> int:
        admitted = 0
        for _ in range(100):  # 50 attempts every 100 ms for 10 s: 50x the limit of 10/s
            for _ in range(50):
                admitted += (await backend.do_limit([hit()]))[0].allowed
            clock.advance(0.1)
        return admitted

    # Attempts span 9.9 s; at 10/s with a burst of 2 the bound is 2 + 10 * 9.9, and GCRA reaches it.
    assert run(go()) == 2 + 99


def test_no_window_edge_doubling() -> None:
    """A fixed window would admit 10 at 0.99 s and 10 more at 1.01 s; GCRA admits burst + rate * 0.02."""
    clock = Clock()
    backend = MemoryBackend(clock_us=clock)

    async def go() -> int:
        clock.advance(0.99)
        first = sum([(await backend.do_limit([hit()]))[0].allowed for _ in range(10)])
        clock.advance(0.02)
        second = sum([(await backend.do_limit([hit()]))[0].allowed for _ in range(10)])
        return first + second

    assert run(go()) == 2


def test_refused_request_spends_nothing_on_its_other_limits() -> None:
    clock = Clock()
    backend = MemoryBackend(clock_us=clock)

    async def go() -> list[bool]:
        tight, loose = hit("tight", burst=1), hit("loose", rate=1000, burst=1000)
        await backend.do_limit([tight, loose])
        decisions = await backend.do_limit([tight, loose])
        assert [d.allowed for d in decisions] == [False, True]
        # The refused request did not spend `loose`: only the first one's single unit is gone.
        return [(await backend.do_limit([hit("loose", rate=1000, burst=1000, cost=999)]))[0].allowed]

    assert run(go()) == [True]


def test_settlement_charges_real_cost_and_refunds_reservation() -> None:
    clock = Clock()
    backend = MemoryBackend(clock_us=clock)

    def tokens(cost: float, settle: bool = False) -> Hit:  # 600 a minute (10 a second), burst 120
        return hit("t", rate=600, period=60, burst=120, cost=cost, settle=settle)

    async def go() -> tuple[bool, bool, int]:
        assert (await backend.do_limit([tokens(16)]))[0].allowed
        # Settled at 110 tokens: +94 beyond the reservation, always applied (a burst holds 120).
        settled = (await backend.do_limit([tokens(110 - 16, settle=True)]))[0]
        after_big = (await backend.do_limit([tokens(16)]))[0]
        # A refund (real cost below the reservation) gives the tenant its tokens back.
        clock.advance(60)
        await backend.do_limit([tokens(16)])
        await backend.do_limit([tokens(1 - 16, settle=True)])
        remaining = (await backend.do_limit([tokens(1)]))[0].remaining
        return settled.allowed, after_big.allowed, remaining

    settled, after_big, remaining = run(go())
    assert settled and not after_big  # 110 spent: the next reservation of 16 does not fit in 120
    assert remaining == 120 - 2  # 1 settled + 1 just spent


def test_redis_backend_agrees_with_memory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path).start()
    try:
        async def go() -> tuple[list[bool], list[bool]]:
            redis = RedisBackend(server.url, timeout_s=1)
            memory = MemoryBackend()
            seq = [hit("a"), hit("a"), hit("a"), hit("b", burst=5, cost=5), hit("b", cost=-5, settle=True)]
            got_redis = [(await redis.do_limit([h]))[0].allowed for h in seq]
            got_memory = [(await memory.do_limit([h]))[0].allowed for h in seq]
            refused = await redis.do_limit([hit("c", burst=1), hit("a")])  # all or nothing, atomically
            assert refused[1].allowed is False
            await redis.close()
            return got_redis, got_memory

        got_redis, got_memory = run(go())
        assert got_redis == got_memory == [True, True, False, True, True]
    finally:
        server.stop()


# -- the service ------------------------------------------------------------------------------------

def table(shadow: bool = False, mode: FailureMode = FailureMode.OPEN) -> lim.LimitTable:
    return lim.LimitTable.build({"acme": lim.TenantLimits(
        tenant="acme", tier="gold", failure_mode=mode, shadow=shadow,
        requests=lim.Limit(5, 1, 1), tokens=lim.Limit(600, 60, 120))})


def request(tenant: str = "acme", kind: str = "requests", hits: int | None = None,
            reserved: int | None = None) -> rls_pb2.RateLimitRequest:
    entries = [("region", "us"), ("tenant", tenant), ("tier", "gold"), ("model", "m"), ("limit", kind)]
    if reserved is not None:
        entries.append(("reserved", str(reserved)))
    d = desc_pb2.RateLimitDescriptor(entries=[desc_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries])
    if hits is not None:
        d.hits_addend.CopyFrom(wrappers_pb2.UInt64Value(value=hits))
    return rls_pb2.RateLimitRequest(domain=lim.DOMAIN, descriptors=[d])


def headers(resp: rls_pb2.RateLimitResponse) -> dict[str, str]:
    return {h.key: h.value for h in resp.response_headers_to_add}


def test_over_limit_answer_carries_retry_after_and_ratelimit_headers() -> None:
    service = RateLimitService(MemoryBackend())
    service.publish(table())

    async def go() -> tuple[rls_pb2.RateLimitResponse, rls_pb2.RateLimitResponse]:
        ok = await service.decide(request())
        return ok, await service.decide(request())

    ok, over = run(go())
    assert ok.overall_code == rls_pb2.RateLimitResponse.OK
    assert headers(ok)["ratelimit-policy"] == '"requests";q=5;w=1'
    assert over.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT
    h = headers(over)
    assert h["retry-after"] == "1" and h["ratelimit"] == '"requests";r=0;t=1'
    status = over.statuses[0]
    assert status.code == rls_pb2.RateLimitResponse.OVER_LIMIT and status.limit_remaining == 0
    assert 0 < status.duration_until_reset.ToMicroseconds() <= 200_000  # one interval at 5/s
    assert status.current_limit.requests_per_unit == 5
    assert service.metrics.decisions.labels("acme", "requests", "limited")._value.get() == 1


def test_unknown_tenant_is_not_limited_and_shadow_is_counted_not_refused() -> None:
    service = RateLimitService(MemoryBackend())
    service.publish(table(shadow=True))

    async def go() -> list[int]:
        codes = [(await service.decide(request())).overall_code for _ in range(3)]
        codes.append((await service.decide(request(tenant="nobody"))).overall_code)
        return codes

    assert run(go()) == [rls_pb2.RateLimitResponse.OK] * 4
    assert service.metrics.decisions.labels("acme", "requests", "shadow_limited")._value.get() == 2


def test_settlement_is_read_from_hits_and_reserved_entry() -> None:
    service = RateLimitService(MemoryBackend())
    service.publish(table())

    async def go() -> rls_pb2.RateLimitResponse:
        await service.decide(request(kind="tokens", hits=16))
        await service.decide(request(kind="tokens", hits=110, reserved=16))  # real cost 110
        return await service.decide(request(kind="tokens", hits=16))

    assert run(go()).overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT  # 110 + 16 > 120
    assert service.metrics.settled_tokens.labels("acme")._value.get() == 110


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.mark.parametrize("dead", ["refused", "stalled"])
def test_backend_down_open_tier_passes_closed_tier_is_unavailable(dead: str, stalled_port: int) -> None:
    if dead == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
    else:
        port = stalled_port

    async def go() -> tuple[int, str]:
        backend = RedisBackend(f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
        open_service = RateLimitService(backend)
        open_service.publish(table(mode=FailureMode.OPEN))
        code = (await open_service.decide(request())).overall_code
        closed_service = RateLimitService(backend)
        closed_service.publish(table(mode=FailureMode.CLOSED))
        with pytest.raises(BackendUnavailable) as err:
            await closed_service.decide(request())
        await backend.close()
        return code, str(err.value)

    code, message = asyncio.run(asyncio.wait_for(go(), timeout=10))
    assert code == rls_pb2.RateLimitResponse.OK
    assert "tier gold fails closed" in message


def test_grpc_status_for_closed_tier_is_unavailable() -> None:
    """Through a real gRPC server: what Envoy sees when the backend is down for a closed tier."""
    from envoy.service.ratelimit.v3 import rls_pb2_grpc

    from xds_server.config.model import RateLimitBackend, RateLimitSettings
    from xds_server.ratelimit.server import RateLimitServer

    async def go() -> grpc.StatusCode:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        settings = RateLimitSettings(enabled=True, backend=RateLimitBackend.REDIS, redis_url=f"redis://127.0.0.1:{dead}/0")
        server = RateLimitServer(settings.model_copy(update={"port": 0}))
        server.publish(table(mode=FailureMode.CLOSED))
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
                stub = rls_pb2_grpc.RateLimitServiceStub(channel)
                try:
                    await stub.ShouldRateLimit(request(), timeout=5)
                except grpc.aio.AioRpcError as err:
                    return err.code()
                return grpc.StatusCode.OK
        finally:
            await server.stop()

    assert asyncio.run(go()) == grpc.StatusCode.UNAVAILABLE
