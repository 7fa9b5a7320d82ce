"""The control plane's probes mean what they say: live while its loop answers, ready once a valid config is
published; a first load that fails (OPA not up, a bad file) is retried without waiting for a file change."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bench.synth import REPO_CONFIG
from xds_server.controlplane.first_load import retry_until_loaded
from xds_server.controlplane.http import status_app
from xds_server.controlplane.service import ControlPlane
from xds_server.xds.store import SnapshotStore

JWKS = '{"keys": []}'


def test_not_ready_but_live_until_a_retried_first_load_publishes(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = tmp_path / "config"
        shutil.copytree(REPO_CONFIG, cfg)
        tenant = cfg / "tenants" / "acme.yaml"
        good = tenant.read_text()
        tenant.write_text("id: acme\ntier: [\n")
        store = SnapshotStore()
        cp = ControlPlane(cfg, None, JWKS, store)
        assert not cp.reload().ok
        async with TestClient(TestServer(status_app(cp))) as client:
            live = await client.get("/livez")
            assert live.status == 200
            ready = await client.get("/readyz")
            assert ready.status == 503
            assert "acme.yaml" in (await ready.json())["reason"]
            assert (await client.get("/healthz")).status == 503

            # Fixed while nothing watches the folder (as when OPA comes up): the retry loop publishes it.
            tenant.write_text(good)
            stop = asyncio.Event()
            await asyncio.wait_for(retry_until_loaded(cp, stop, initial_s=0.01, max_s=0.05), timeout=120)
            ready = await client.get("/readyz")
            assert ready.status == 200
            assert cp.compiled is not None
            assert (await ready.json())["config_version"] == cp.compiled.version
            assert sorted(store.regions()) == ["eu-west-1", "us-east-1"]
            assert (await client.get("/livez")).status == 200

    asyncio.run(scenario())


def test_retry_stops_when_told_to(tmp_path: Path) -> None:
    async def scenario() -> None:
        cp = ControlPlane(tmp_path / "missing", None, JWKS, SnapshotStore())
        assert not cp.reload().ok
        stop = asyncio.Event()
        first = cp.last
        task = asyncio.create_task(retry_until_loaded(cp, stop, initial_s=0.01, max_s=0.02))
        while cp.last is first:  # until it has retried (and failed) at least once
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        assert cp.compiled is None

    asyncio.run(scenario())
