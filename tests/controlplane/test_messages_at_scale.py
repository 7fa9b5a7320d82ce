"""Messages a person reads stay short when they concern thousands of tenants or resources: the first few,
then how many more (xds_server.listing), while the JSON form keeps every item."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from bench.synth import tenant_id, tenant_spec, write_config
from xds_server.audit import report
from xds_server.cli import main
from xds_server.envoy.validate import REASON_CHARS, _reason
from xds_server.snapshot import Snapshot
from xds_server.xds.store import NACK_MESSAGE_CHARS, SOTW, ConfigRejected, Nack, SnapshotStore

TENANTS = 2_000


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A valid config of TENANTS tenants, and a copy in which every tenant names an unknown tier."""
    root = tmp_path_factory.mktemp("scale")
    good = write_config(root / "good", TENANTS)
    bad = write_config(root / "bad", 0)
    for i in range(TENANTS):
        spec = tenant_spec(i) | {"tier": "platinum"}
        (bad / "tenants" / f"{tenant_id(i)}.yaml").write_text(yaml.safe_dump(spec))
    return good, bad


def test_a_config_with_thousands_of_problems_lists_twenty_then_the_count(
        configs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, bad = configs
    assert main(["validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0] == f"config is invalid ({TENANTS:,} problems):"
    assert len(lines) == 22 and len(err) < 3_000
    assert "t00000.yaml: tier: unknown tier 'platinum'" in lines[1]
    assert lines[-1] == f"  ... and {TENANTS - 20:,} more (`fairshare validate --json` lists every one)"

    assert main(["validate", "--config", str(bad), "--json"]) == 2
    found = json.loads(capsys.readouterr().out)
    assert found["ok"] is False and len(found["problems"]) == TENANTS
    assert {p["field"] for p in found["problems"]} == {"tier"}
    assert {Path(p["file"]).name for p in found["problems"]} == {f"{tenant_id(i)}.yaml" for i in range(TENANTS)}


def test_an_unknown_tenant_among_thousands_names_a_few_and_the_count(
        configs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, _ = configs
    assert main(["token", "--config", str(good), "--state", str(tmp_path), "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: unknown tenant 'nobody' ({TENANTS:,} known: t00000, t00001, t00002, t00003, "
                           f"t00004 and {TENANTS - 5:,} more)")


def test_envoys_reason_for_a_rejection_naming_thousands_of_resources_is_bounded() -> None:
    output = "\n".join(
        f"[2026-01-01 00:00:00.000][1][error][config] [source/server.cc:1] error initializing config "
        f"'/tmp/b.pb': cluster tenant-{i:05d}/embedder: invalid circuit breaker" for i in range(5_000))
    reason = _reason(output)
    assert reason.startswith("cluster tenant-00000/embedder: invalid circuit breaker; cluster tenant-00001/")
    assert reason.endswith("and 4,995 more") and len(reason) < REASON_CHARS
    # One line naming every resource is cut, the cut marked.
    one_line = _reason("[error] error initializing config '/tmp/b.pb': " + ", ".join(f"r{i}" for i in range(9_000)))
    assert len(one_line) == REASON_CHARS and one_line.endswith("…")


def test_waiting_on_thousands_of_gateways_names_the_furthest_behind_and_the_count() -> None:
    async def scenario() -> str:
        store = SnapshotStore()
        store.set_snapshot("eu", Snapshot.build("v1", []))
        for i in range(3_000):
            store.open_stream(f"gw-{i:04d}", "eu", SOTW)
        with pytest.raises(TimeoutError) as waited:
            await store.wait_applied("eu", "v1", timeout=0.01)
        return str(waited.value)

    message = asyncio.run(scenario())
    assert "3000 connected node(s) (need 1); behind: gw-0000 at None" in message
    assert message.endswith("and 2,995 more") and len(message) < 400


def test_a_nack_naming_thousands_of_resources_is_bounded_where_it_is_quoted() -> None:
    names = ", ".join(f"routes-t{i:05d}" for i in range(6_000))
    nack = Nack(type_url="type.googleapis.com/envoy.config.route.v3.RouteConfiguration", version="v2", nonce="3",
                message=f"Error adding/updating route configs {names}: duplicate", at=0.0)
    text = str(ConfigRejected("gw-1", nack))
    assert text.startswith("node gw-1 rejected RouteConfiguration version v2: Error adding/updating route configs")
    assert len(text) < NACK_MESSAGE_CHARS + 100 and text.endswith("…")


def test_compliance_report_lists_are_capped_and_its_json_keeps_them() -> None:
    own = [f"model-{i:04d}" for i in range(1_000)]
    assert report._join(own) == (", ".join(own[:report.REPORT_LIST_LIMIT])
                                 + f" and {1_000 - report.REPORT_LIST_LIMIT} more")
    assert report._join([]) == "none"
