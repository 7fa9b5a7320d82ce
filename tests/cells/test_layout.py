"""Which gateways `fairshare run` starts: a single-cell region exactly as before, a region with cells a front
tier on its port and each cell's Envoys on the next ports, written into the endpoints as pools gateway.<cell>."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.synth import REPO_CONFIG, small_config
from tests.cells.conftest import two_cell_config
from xds_server.cli import main
from xds_server.config import load_config
from xds_server.local.layout import cell_gateway_endpoints, plan_gateways


def test_a_single_cell_region_keeps_todays_gateways() -> None:
    cfg = load_config(REPO_CONFIG)
    plan = plan_gateways(cfg, per_region=2, per_cell=3)
    assert [(g.key, g.node_id, g.snapshot, g.cell, g.port) for g in plan] == [
        (key, node, region, None, cfg.regions[region].gateway_port)
        for region in cfg.regions
        for key, node in ((region, f"gateway-{region}"), (f"{region}#2", f"gateway-{region}-2"))]
    assert cell_gateway_endpoints(cfg) == {}


def test_a_region_with_cells_runs_a_front_tier_and_each_cells_envoys(tmp_path: Path) -> None:
    config = two_cell_config(tmp_path)
    cfg = load_config(config)
    port = cfg.regions["us-east-1"].gateway_port
    plan = plan_gateways(cfg, per_region=1, per_cell=2)
    assert [(g.key, g.node_id, g.cell, g.port) for g in plan] == [
        ("us-east-1/front", "gateway-us-east-1-front", "front", port),
        ("us-east-1/c0", "gateway-us-east-1-c0", "c0", port + 1),
        ("us-east-1/c0#2", "gateway-us-east-1-c0-2", "c0", port + 1),
        ("us-east-1/c1", "gateway-us-east-1-c1", "c1", port + 2),
        ("us-east-1/c1#2", "gateway-us-east-1-c1-2", "c1", port + 2)]
    pools = cell_gateway_endpoints(cfg)
    assert {k: [e.port for e in v] for k, v in pools.items()} == {
        ("us-east-1", "gateway.c0"): [port + 1], ("us-east-1", "gateway.c1"): [port + 2]}


@pytest.mark.parametrize("flag", ["--gateways", "--gateways-per-cell"])
def test_run_refuses_fewer_than_one_gateway(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = small_config(tmp_path, 8080)
    assert main(["run", "--config", str(config), "--state", str(tmp_path / "state"), flag, "0"]) == 2
    assert f"error: {flag} must be at least 1, got 0" in capsys.readouterr().err


def test_run_refuses_a_cell_on_another_regions_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example regions sit on 8080 and 8081: two cells in the first put cell c0 on 8081, where Envoy's
    SO_REUSEPORT would let both bind and the kernel spread the EU's clients over a US cell."""
    import shutil

    import yaml

    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    assert [(r["id"], r["gateway_port"]) for r in regions["regions"]] == [("us-east-1", 8080), ("eu-west-1", 8081)]
    regions["regions"][0]["cells"] = {"shared": 2}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    assert main(["run", "--config", str(config), "--state", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert f"{config / 'regions.yaml'}: us-east-1.gateway_port: port 8081 would be listened on by " \
           "region us-east-1's cell c0 and region eu-west-1's gateway" in err, err
    assert not (tmp_path / "state" / "run").exists()  # nothing was started


def test_stopping_drains_the_front_tier_before_the_cells(tmp_path: Path) -> None:
    """The front's HTTP/2 connections to a cell would hold that cell's drain open to its end (a warning per
    cell, and the whole drain time waited) if both drained at once."""
    from typing import Any, cast

    from xds_server.local.platform import LocalPlatform, PlatformOptions

    events: list[str] = []

    class Gateway:
        drain_time_s = 0.0

        def __init__(self, name: str) -> None:
            self.name = name

        def begin_drain(self) -> None:
            events.append(f"drain {self.name}")

        def wait_drained(self, _timeout: float) -> None:
            events.append(f"drained {self.name}")

        def stop(self) -> None:
            events.append(f"stop {self.name}")

    platform = LocalPlatform(PlatformOptions(config_dir=tmp_path, state_dir=tmp_path))
    platform.envoys = cast(dict[str, Any], {key: Gateway(key) for key in (
        "us-east-1/c0", "us-east-1/front", "us-east-1/front#2", "us-east-1/c1", "eu-west-1")})
    platform.stop()
    assert events == [
        "drain us-east-1/front", "drain us-east-1/front#2", "drained us-east-1/front", "drained us-east-1/front#2",
        "stop us-east-1/front", "stop us-east-1/front#2",
        "drain us-east-1/c0", "drain us-east-1/c1", "drain eu-west-1",
        "drained us-east-1/c0", "drained us-east-1/c1", "drained eu-west-1",
        "stop us-east-1/c0", "stop us-east-1/c1", "stop eu-west-1"]
    assert platform.envoys == {}
