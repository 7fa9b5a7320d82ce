"""The rate-limit service's gRPC server and its backend, built from one settings struct.

It runs inside the control-plane process on its own port: the limit table is swapped in the same step
that publishes the snapshots it belongs to, and the service holds no state of its own (Redis holds the
counters), so running it beside each control-plane replica scales it with them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiohttp import web
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST

from xds_server.config.model import RateLimitBackend, RateLimitSettings
from xds_server.controlplane.grpc_tls import GatewayOnly, serve_tls
from xds_server.ratelimit.backends import Backend
from xds_server.ratelimit.backends.memory import MemoryBackend
from xds_server.ratelimit.backends.redis import RedisBackend
from xds_server.ratelimit.limits import LimitTable
from xds_server.ratelimit.service import RateLimitService

log = logging.getLogger("fairshare.ratelimit")


def make_backend(settings: RateLimitSettings) -> Backend:
    if settings.backend == RateLimitBackend.REDIS:
        assert settings.redis_url is not None  # the settings model requires it
        # Half of Envoy's timeout: a slow Redis is answered by the tier's failure rule before Envoy gives up.
        return RedisBackend(settings.redis_url, timeout_s=settings.timeout_ms / 2000)
    return MemoryBackend()


@dataclass
class RateLimitServer:
    settings: RateLimitSettings
    # Off by default, so a port already taken is an error, not a silent share with a stranger.
    reuse_port: bool = False
    # Mutual TLS, only the gateway's certificate (xds_server.controlplane.grpc_tls); None: plaintext.
    tls_dir: Path | None = None
    service: RateLimitService = field(init=False)
    bound_port: int = 0
    _server: grpc.aio.Server | None = None

    def __post_init__(self) -> None:
        self.service = RateLimitService(make_backend(self.settings))

    def publish(self, table: LimitTable) -> None:
        self.service.publish(table)

    async def metrics_handler(self, _: web.Request) -> web.Response:
        return web.Response(body=self.service.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", int(self.reuse_port))],
                                       interceptors=[GatewayOnly()] if self.tls_dir is not None else None)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(self.service, self._server)
        address = f"{self.settings.host}:{self.settings.port}"
        self.bound_port = serve_tls(self._server, address, self.tls_dir)
        if self.bound_port == 0:
            raise OSError(f"rate-limit service cannot listen on {address}")
        await self._server.start()
        log.info("rate-limit service on %s:%d (backend %s, %s)", self.settings.host, self.bound_port,
                 self.service.backend.name, "mutual TLS" if self.tls_dir is not None else "plaintext")

    async def stop(self, grace: float = 0.5) -> None:
        if self._server is not None:
            await self._server.stop(grace)
        await self.service.backend.close()
