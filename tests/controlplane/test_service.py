"""The reload loop's promises, without Envoy: publish what validates, keep the last good otherwise."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bench.synth import REPO_CONFIG
from xds_server.controlplane.service import ControlPlane
from xds_server.status_table import cell_rows
from xds_server.xds.store import SnapshotStore

JWKS = '{"keys": []}'


def make(tmp_path: Path) -> tuple[ControlPlane, SnapshotStore, Path]:
    cfg = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, cfg)
    store = SnapshotStore()
    return ControlPlane(cfg, None, JWKS, store), store, cfg


def test_valid_config_is_published_per_region(tmp_path: Path) -> None:
    async def scenario() -> None:
        cp, store, _ = make(tmp_path)
        outcome = cp.reload()
        assert outcome.ok and outcome.error is None
        assert sorted(store.regions()) == ["eu-west-1", "us-east-1"]
        assert cp.status()["config_version"] == outcome.version
        # A region without cells is still listed with the tenants its gateways serve, which the status
        # table prints (it printed "-").
        assert cp.config is not None
        served = {r: sum(1 for t in cp.config.tenants.values() if r in t.routes) for r in store.regions()}
        listed = {c["key"]: c for c in cp.status()["cells"]}  # type: ignore[attr-defined]
        assert {key: c["tenants"] for key, c in listed.items()} == served
        assert all(c["cell"] is None for c in listed.values())
        assert 0 < served["eu-west-1"] < served["us-east-1"], served
        rows = {row.key: row for row in cell_rows(cp.status())}
        assert {key: row.tenants for key, row in rows.items()} == served

    asyncio.run(scenario())


def test_invalid_edit_keeps_the_last_good_snapshots(tmp_path: Path) -> None:
    async def scenario() -> None:
        cp, store, cfg = make(tmp_path)
        good = cp.reload()
        before = {r: store.get(r) for r in store.regions()}
        (cfg / "tenants" / "acme.yaml").write_text("id: acme\ntier: [\n")
        bad = cp.reload()
        assert not bad.ok and bad.version == good.version
        assert bad.error is not None and "acme.yaml: line 3, column 1: not valid YAML" in bad.error
        assert {r: store.get(r) for r in store.regions()} == before
        status = cp.status()
        assert status["config_version"] == good.version
        assert status["last_reload"]["ok"] is False  # type: ignore[index]

    asyncio.run(scenario())


def test_invalid_config_at_start_publishes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        cp, store, cfg = make(tmp_path)
        (cfg / "tiers.yaml").unlink()
        outcome = cp.reload()
        assert not outcome.ok and outcome.version is None
        assert outcome.error is not None and "tiers.yaml: required file is missing" in outcome.error
        assert store.regions() == []

    asyncio.run(scenario())


def test_watch_picks_up_an_edit(tmp_path: Path) -> None:
    async def scenario() -> None:
        cp, _, cfg = make(tmp_path)
        first = cp.reload()
        stop = asyncio.Event()
        watcher = asyncio.create_task(cp.watch(stop))
        await asyncio.sleep(0.3)
        path = cfg / "tenants" / "acme.yaml"
        path.write_text(path.read_text().replace("{v1: 90, v2: 10}", "{v1: 80, v2: 20}"))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if cp.last is not None and cp.last.version != first.version:
                break
        stop.set()
        await asyncio.wait_for(watcher, 5)
        assert cp.last is not None and cp.last.ok and cp.last.version != first.version

    asyncio.run(scenario())


def test_a_refused_reload_keeps_every_tenant_a_problem_names_in_the_status_json(tmp_path: Path) -> None:
    """The status page's text shows a violation's first few tenants; its JSON form keeps them all, as
    `fairshare validate --json` does (issue 14: messages that stay readable at scale)."""
    async def scenario() -> None:
        cp, _, cfg = make(tmp_path)
        assert cp.reload().ok
        names = [f"gpu{i:02d}" for i in range(12)]
        for name in names:  # one GPU each in us-east-1, whose pools have 4
            (cfg / "tenants" / f"{name}.yaml").write_text(
                f"id: {name}\ntier: pro\nregions: {{home: us-east-1, allowed: [us-east-1]}}\n"
                "quotas: {gpus: 1}\nmodels: {classifier: {split: {v1: 100}}}\n")
        outcome = cp.reload()
        assert not outcome.ok and outcome.error is not None and "more" in outcome.error
        last = cp.status()["last_reload"]
        [over] = [p for p in last["problems"] if "gpu-guarantees-exceed-capacity" in p["message"]]  # type: ignore[index]
        assert {s.split("=")[0] for s in over["subjects"]} >= set(names)
        assert not any(name in outcome.error for name in names[6:])  # the text is capped

    asyncio.run(scenario())


def test_a_reload_in_progress_shows_in_the_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build that does not end (a read that blocks) showed as "last reload ok" from before it began."""
    import threading

    from xds_server.controlplane import service
    from xds_server.status_table import render_config

    cp, _, _ = make(tmp_path)
    assert cp.reload().ok
    entered, release = threading.Event(), threading.Event()
    real = service.load_config

    def held(*args: object, **kwargs: object) -> object:
        entered.set()
        assert release.wait(30)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "load_config", held)
    building = threading.Thread(target=cp.reload)
    building.start()
    try:
        assert entered.wait(30)
        since = cp.status()["reloading_since"]
        assert isinstance(since, float)
        assert "a reload in progress for 1m" in render_config(cp.status(), since + 61)
        assert "in progress" not in render_config(cp.status(), since + 1)  # a normal reload's time: not named
    finally:
        release.set()
        building.join(30)
    assert cp.status()["reloading_since"] is None and cp.last is not None and cp.last.ok
