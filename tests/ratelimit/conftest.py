"""A real platform for the rate-limit tests: two Envoy gateways sharing one region's port, the
rate-limit service in the control plane, and a real Redis, from a small config of purpose-made tenants
(each test has its own tenant, so their counters never meet)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.ratelimit import gateway_stat, service_metric
from bench.ratelimit import write_config as bench_config
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port
from xds_server.ratelimit.local_redis import RedisServer

REGION = "us-east-1"
BURST_FRACTION = 0.2
TOKEN_ESTIMATE = 16

# tenant: (tier, requests per second, tokens per minute, extra spec)
TENANTS: dict[str, tuple[str, float, int, dict[str, object]]] = {
    "flood": ("open", 10, 1_000_000, {}),
    "calm": ("open", 20, 1_000_000, {}),
    "pair": ("open", 10, 1_000_000, {}),
    "edge": ("open", 10, 1_000_000, {}),
    "costly": ("open", 100, 600, {}),
    "shadowy": ("open", 5, 1_000_000, {"rate_limit": {"shadow": True}}),
    "openco": ("open", 50, 1_000_000, {}),
    "closedco": ("closed", 50, 1_000_000, {}),
    "low1": ("open", 1, 1_000_000, {}),
    "low5": ("open", 5, 1_000_000, {}),
}


def write_config(root: Path, gateway_port: int) -> Path:
    tenants = {tenant: {"tier": tier, "quotas": {"requests_per_second": rps, "tokens_per_minute": tpm}, **extra}
               for tenant, (tier, rps, tpm, extra) in TENANTS.items()}
    return bench_config(root, gateway_port, tenants, burst_fraction=BURST_FRACTION, token_estimate=TOKEN_ESTIMATE)


@dataclass
class LimitedPlatform:
    platform: LocalPlatform
    redis: RedisServer
    key: SigningKey

    def token(self, tenant: str) -> str:
        assert self.platform.config is not None
        return issue_token(self.key, self.platform.config.platform.auth, tenant)

    @property
    def infer_url(self) -> str:
        return self.platform.gateway_url(REGION) + "/v2/models/classifier/infer"

    def metric(self, name: str, **labels: str) -> float:
        return service_metric(self.platform, name, **labels)

    def gateway_2xx(self) -> dict[str, int]:
        """Per gateway process: requests it answered 2xx."""
        return gateway_stat(self.platform, "http.gateway.downstream_rq_2xx")


def decisions(platform: LocalPlatform, tenant: str) -> dict[str, float]:
    """The service's request decisions for one tenant: allowed and limited (what only it can refuse)."""
    return {outcome: service_metric(platform, "fairshare_ratelimit_decisions_total", tenant=tenant,
                                    limit="requests", outcome=outcome) for outcome in ("allowed", "limited")}


# Per gateway: requests its local bucket refused (every tenant's; each test reads its own delta).
LOCAL_REFUSED = "tenant_local_rate_limit.http_local_rate_limit.rate_limited"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def limited(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[LimitedPlatform]:
    root = tmp_path_factory.mktemp("ratelimit-platform")
    cfg = write_config(root, free_port())
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(
        config_dir=cfg, state_dir=state, xds_port=free_port(), status_port=free_port(),
        gateways_per_region=2, ratelimit_redis_url=redis_server.url,
    ))
    platform.start()
    try:
        yield LimitedPlatform(platform, redis_server, SigningKey.load_or_create(state))
    finally:
        platform.stop()
