"""`fairshare serve --endpoints-from kubernetes`: a control plane started before the API answers waits for
it (backing off), then serves the endpoints it lists; a bad kubeconfig is refused with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.synth import small_config
from tests.endpoints.apiserver import StandInApiServer, endpoint_slice
from xds_server.local.processes import Child, free_port, wait_http


def serve_argv(cfg: Path, state: Path, status_port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xds_server", "serve", "--config", str(cfg), "--state", str(state),
            "--xds-port", str(free_port()), "--status-port", str(status_port), "--ratelimit-port", str(free_port()),
            "--endpoints-from", "kubernetes", *extra]


def test_waits_for_the_api_then_serves_what_it_lists(apiserver: StandInApiServer, kubeconfig: Path,
                                                     tmp_path: Path) -> None:
    cfg = small_config(tmp_path, free_port())
    status_port = free_port()
    log = tmp_path / "control-plane.log"
    child = Child("control-plane", serve_argv(cfg, tmp_path / "state", status_port, "--kubeconfig", str(kubeconfig)),
                  log_file=log).start()
    try:
        # The API refuses connections: the control plane retries (logged), and publishes nothing meanwhile.
        deadline = time.monotonic() + 60
        while log.read_text().count("EndpointSlice list failed") < 2:
            assert child.alive() and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        apiserver.start()
        apiserver.apply(endpoint_slice("fairshare-pool-cpu-abcde", "us-east-1", "cpu",
                                       [("10.0.0.1", "ready", "cpu-1"), ("10.0.0.2", "terminating", "cpu-2"),
                                        ("10.0.0.3", "unready", "cpu-3")], 8080))
        wait_http(f"http://127.0.0.1:{status_port}/healthz", 60, proc=child.proc, log_file=log)
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=5) as resp:
            status = json.load(resp)
        assert status["last_reload"]["ok"], status["last_reload"]
        assert [(r["name"], r["address"]) for r in status["replicas"]] == [("cpu-1", "10.0.0.1:8080"),
                                                                            ("cpu-2", "10.0.0.2:8080")]
        assert status["xds"]["regions"]["us-east-1"]["version"]
        # The source's own state is in /status: the refused lists counted as errors, one list that served,
        # and the resourceVersion it follows (the API's).
        source = status["endpoint_source"]
        assert source["source"] == "kubernetes" and source["synced"] is True, source
        assert source["errors"] >= 2 and source["lists"] == 1 and source["expired"] == 0, source
        assert source["resource_version"] == str(apiserver.rv), source
        # A 410 on the open watch: /status shows the expiry and the relist that followed it.
        apiserver.expire_watches()
        deadline = time.monotonic() + 30
        while (source := get_status(status_port)["endpoint_source"])["lists"] < 2:
            assert time.monotonic() < deadline, source
            time.sleep(0.05)
        assert source["expired"] == 1 and source["watches"] >= 2, source
    finally:
        child.stop()


def get_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        return dict(json.load(resp))


def test_a_missing_kubeconfig_is_refused_with_the_reason(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, free_port())
    proc = subprocess.run(serve_argv(cfg, tmp_path / "state", free_port(), "--kubeconfig", str(tmp_path / "nope")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"kubeconfig {tmp_path / 'nope'}: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
