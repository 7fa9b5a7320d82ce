"""`make run`'s shape: one gateway, the service's counters in the control plane's memory (no Redis)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadgen import Target, infer_body
from bench.ratelimit import offer_sync, write_config
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def memory_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Path]]:
    root = tmp_path_factory.mktemp("ratelimit-memory")
    cfg = write_config(root, free_port(), {"solo": {"quotas": {"requests_per_second": 10}}})
    platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=root / "state", xds_port=free_port(),
                                             status_port=free_port()))
    platform.start()
    try:
        yield platform, root / "state"
    finally:
        platform.stop()


def test_memory_backend_holds_a_tenant_to_its_limit(memory_platform: tuple[LocalPlatform, Path]) -> None:
    platform, state = memory_platform
    assert platform.config is not None
    token = issue_token(SigningKey.load_or_create(state), platform.config.platform.auth, "solo")
    target = Target(platform.gateway_url("us-east-1") + "/v2/models/classifier/infer", token, infer_body(["x"]))
    answers = offer_sync(target, 30, 3)
    statuses = Counter(a.status for a in answers)
    span = answers[-1].started_s - answers[0].started_s
    assert set(statuses) == {200, 429}, statuses
    assert statuses[200] <= 2 + 10 * span + 1, statuses  # burst 2 + 10/s over the span
    log = (platform.run_dir / "control-plane.log").read_text()
    assert "backend memory" in log
