"""`fairshare status` against the running platform: a table a person reads (every gateway synced, the
config line with ages), and `--json` the machine form with every field."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import RunningPlatform
from xds_server.cli import main
from xds_server.status_table import NOT_SENT, STALE, TYPES, gateway_rows


def test_status_prints_every_gateway_synced_and_json_keeps_the_machine_form(
        running: RunningPlatform, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(running.platform.opts.status_port)
    assert main(["status", "--status-port", port, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"config_version", "tenants", "last_reload", "xds", "replicas"} <= set(status)
    assert all(isinstance(n["connected_at"], float) for n in status["xds"]["nodes"].values())  # epoch, as before
    # Memory may not have been reported yet (one stats flush after an Envoy starts); the rest must be there.
    regions = {n["region"] for n in status["xds"]["nodes"].values()}
    assert regions == set(status["xds"]["regions"]) and len(regions) == 2

    assert main(["status", "--status-port", port]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split()[4:9] == [column for column, _ in TYPES]
    for row in gateway_rows(status, status["xds"]["at"]):
        assert row.connected and STALE not in row.states, text
        assert row.states[:3] != (NOT_SENT,) * 3, "clusters, listeners and endpoints are always sent"
        [line] = [line for line in lines if line.startswith(row.node_id + " ")]
        assert f" {row.region} " in line and "SYNCED" in line and row.version in line
    assert "epoch" not in text and str(int(status["xds"]["at"])) not in text  # ages, not timestamps
    (config_line,) = [line for line in lines if line.startswith("config ")]
    assert config_line.startswith(f"config {status['config_version']} ({status['tenants']} tenants); last reload ok ")
    # An age, then how the reload went: incremental or full, and where its time went.
    assert re.search(r"; last reload ok \S+ ago \((incremental|full), [0-9.]+s: load [0-9.]+s, compile [0-9.]+s, "
                     r"validate [0-9.]+s, publish [0-9.]+s\)$", config_line), config_line
    # Then the audit trail's head: where a copy of it must end.
    assert lines[-1].startswith("audit trail ") and f"seq {status['audit']['seq']}, head sha256:" in lines[-1]
