"""Redis or the rate-limit service down or stalled: each tier gets what its spec says (open tiers keep
serving, closed tiers get 503), the outage shows in metrics, and both recover when it ends.

Runs after test_gateway.py (file order); it stops and restarts the shared Redis and control plane."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from bench.loadgen import infer_body
from tests.e2e.conftest import eventually, post
from tests.ratelimit.conftest import LimitedPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def statuses(limited: LimitedPlatform, tenant: str, n: int = 6) -> Counter[int]:
    token = limited.token(tenant)
    return Counter(post(limited.infer_url, infer_body(["outage"]), token).status for _ in range(n))


def serving(limited: LimitedPlatform) -> bool:
    return statuses(limited, "openco", 2) == Counter({200: 2}) and statuses(limited, "closedco", 2) == Counter({200: 2})


def test_redis_killed_open_tiers_serve_closed_tiers_refuse_and_both_recover(limited: LimitedPlatform) -> None:
    assert eventually(lambda: serving(limited), timeout=30)
    limited.redis.kill()
    try:
        assert statuses(limited, "openco") == Counter({200: 6})
        assert statuses(limited, "closedco") == Counter({503: 6})
        assert limited.metric("fairshare_ratelimit_backend_up", backend="redis") == 0
        assert limited.metric("fairshare_ratelimit_decisions_total", tenant="openco", limit="requests",
                              outcome="failure_open") > 0
        assert limited.metric("fairshare_ratelimit_decisions_total", tenant="closedco", limit="requests",
                              outcome="failure_closed") > 0
    finally:
        limited.redis.start()
    assert eventually(lambda: serving(limited), timeout=30)
    assert limited.metric("fairshare_ratelimit_backend_up", backend="redis") == 1
    log = (limited.platform.run_dir / "control-plane.log").read_text()
    assert "rate-limit backend redis unavailable" in log and "rate-limit backend redis is back" in log


def test_stalled_redis_is_answered_by_the_failure_mode_not_a_hang(limited: LimitedPlatform) -> None:
    assert eventually(lambda: serving(limited), timeout=30)
    assert limited.redis.proc is not None
    pid = limited.redis.proc.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        assert statuses(limited, "openco") == Counter({200: 6})
        assert statuses(limited, "closedco") == Counter({503: 6})
    finally:
        os.kill(pid, signal.SIGCONT)
    assert eventually(lambda: serving(limited), timeout=30)


def test_rate_limit_service_down_each_tier_fails_as_its_spec_says(limited: LimitedPlatform) -> None:
    assert eventually(lambda: serving(limited), timeout=30)
    limited.platform.stop_control_plane()  # the service runs inside it; Envoy keeps its last config
    try:
        assert statuses(limited, "openco") == Counter({200: 6})
        assert statuses(limited, "closedco") == Counter({503: 6})
    finally:
        limited.platform.start_control_plane()
    assert eventually(lambda: serving(limited), timeout=30)
