"""`make run`'s shape: one gateway, the service's counters in the control plane's memory (no Redis)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadgen import Target, infer_body
from bench.ratelimit import offer_sync, write_config
from tests.ratelimit.conftest import LOCAL_REFUSED, decisions, gateway_stat
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def memory_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Path]]:
    root = tmp_path_factory.mktemp("ratelimit-memory")
    cfg = write_config(root, free_port(), {"solo": {"quotas": {"requests_per_second": 10}},
                                                   "low5": {"quotas": {"requests_per_second": 5}}})
    platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=root / "state", xds_port=free_port(),
                                             status_port=free_port()))
    platform.start()
    try:
        yield platform, root / "state"
    finally:
        platform.stop()


def test_one_gateway_admits_a_low_limit_whole(memory_platform: tuple[LocalPlatform, Path]) -> None:
    """5 requests/s at 3x through one gateway (`make run`'s shape): admitted within 5% of the limit, not
    the two thirds a local bucket at the tenant's own rate left it (it spent tokens on requests the
    shared limiter then refused). Counted after the first 2 s, when the burst is spent."""
    platform, state = memory_platform
    assert platform.config is not None
    token = issue_token(SigningKey.load_or_create(state), platform.config.platform.auth, "low5")
    target = Target(platform.gateway_url("us-east-1") + "/v2/models/classifier/infer", token, infer_body(["x"]))
    answers = offer_sync(target, 15, 12)
    steady = [a for a in answers if a.started_s >= 2.0]
    span = answers[-1].started_s - 2.0 + 1 / 15
    ratio = sum(a.status == 200 for a in steady) / (5 * span)
    assert abs(ratio - 1) <= 0.05, (ratio, Counter(a.status for a in steady))


def test_memory_backend_holds_a_tenant_to_its_limit(memory_platform: tuple[LocalPlatform, Path]) -> None:
    """1.5x the limit: under the gateway's local bucket (a flood guard at 2x), so every refusal is the
    shared limiter's, counted in the control plane's memory."""
    platform, state = memory_platform
    assert platform.config is not None
    token = issue_token(SigningKey.load_or_create(state), platform.config.platform.auth, "solo")
    target = Target(platform.gateway_url("us-east-1") + "/v2/models/classifier/infer", token, infer_body(["x"]))
    local_before = gateway_stat(platform, LOCAL_REFUSED)
    answers = offer_sync(target, 15, 3)
    statuses = Counter(a.status for a in answers)
    span = answers[-1].started_s - answers[0].started_s
    assert set(statuses) == {200, 429}, statuses
    assert statuses[200] <= 2 + 10 * span + 1, statuses  # burst 2 + 10/s over the span
    # Each refusal is the service's (a remaining count of 0; the local bucket writes none), and the
    # service counted exactly what was served and what was refused.
    assert all(a.headers.get("ratelimit", "").startswith('"requests";r=0') for a in answers if a.status == 429)
    assert decisions(platform, "solo") == {"allowed": statuses[200], "limited": statuses[429]}
    assert gateway_stat(platform, LOCAL_REFUSED) == local_before  # the local bucket refused none
    log = (platform.run_dir / "control-plane.log").read_text()
    assert "backend memory" in log
