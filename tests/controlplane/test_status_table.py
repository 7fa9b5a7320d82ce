"""`fairshare status` as a person reads it, against the real xDS server and the real Envoy: a gateway that
applied the published config is SYNCED on every type and shows its memory (from its own stat sink);
after a config Envoy rejects, the rejected type is STALE and the row carries the NACK's reason."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.xds.test_ads import Ports, make_snapshot, wait_until, xds_server
from xds_server.envoy import EnvoyProcess, bootstrap
from xds_server.status_table import NOT_SENT, STALE, SYNCED, TYPES, gateway_rows, render
from xds_server.xds.store import ConfigRejected, SnapshotStore


@contextlib.asynccontextmanager
async def gateway(work: Path, xds_port: int) -> AsyncIterator[EnvoyProcess]:
    config = bootstrap("gw-eu-0", "eu", "127.0.0.1", xds_port, 0, delta=True)
    # Flush stats every second (Envoy's default is 5 s) so the memory report arrives without a long wait.
    config["stats_flush_interval"] = "1s"
    proc = EnvoyProcess(config, work, log_level=os.environ.get("XDS_TEST_ENVOY_LOG", "warning")).start()
    try:
        await asyncio.to_thread(proc.wait_ready, 15)
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def _row(text: str, node_id: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.startswith(node_id + " ")]
    return line.split()


def test_status_table_shows_the_real_envoy_synced_then_stale_with_its_nack(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        store = SnapshotStore()
        ports = Ports()
        store.set_snapshot("eu", make_snapshot("v1", ports, "v1"))
        async with xds_server(store) as server, gateway(tmp_path, server.bound_port):
            await store.wait_applied("gw-eu-0", "v1", timeout=15)
            await wait_until(lambda: store.status()["nodes"]["gw-eu-0"]["memory"] is not None, timeout=15,
                             what="the gateway's stat sink to report its memory")

            synced = {"xds": store.status()}
            text = render(synced)
            row = _row(text, "gw-eu-0")
            assert row[:5] == ["gw-eu-0", "eu", "-", "yes", row[4]] and row[4].endswith("s")  # no cell: "-"
            assert row[5:10] == [SYNCED] * 5, text
            assert row[10] == "v1"
            memory = store.status()["nodes"]["gw-eu-0"]["memory"]["allocated"]
            assert memory > 1_000_000, "Envoy's allocator holds megabytes once it runs a config"
            assert row[11:13] == [f"{memory / 2**20:.3g}", "MiB"], text
            assert row[13] == "-", "no NACK yet"
            # The region's section: published version, the gateway applied it, its memory summed.
            [cell] = [line for line in text.splitlines() if line.startswith("eu ")]
            assert "v1" in cell and "1/1 applied" in cell and "MiB" in cell, text

            store.set_snapshot("eu", make_snapshot("v2", ports, "v2", bad_regex=True))
            with pytest.raises(ConfigRejected):
                await store.wait_applied("eu", "v2", timeout=15)
            return {"xds": store.status()}

    rejected = asyncio.run(scenario())
    text = render(rejected)
    [row] = [r for r in gateway_rows(rejected, rejected["xds"]["at"]) if r.node_id == "gw-eu-0"]
    by_type = dict(zip((column for column, _ in TYPES), row.states, strict=True))
    assert by_type["RDS"] == STALE, text
    # The rejected snapshot changed only routes: Envoy holds the published clusters and listeners.
    assert by_type["CDS"] == SYNCED and by_type["LDS"] == SYNCED, text
    assert row.version == "v1", "the last config it applied"
    assert row.nack.startswith("RDS ") and "missing ]" in row.nack, row.nack  # RE2's own words
    assert "missing ]" in text and "STALE" in text
    assert NOT_SENT not in row.states
    # The gateway needing attention is the first row under the header.
    assert text.splitlines()[1].startswith("gw-eu-0 ")
