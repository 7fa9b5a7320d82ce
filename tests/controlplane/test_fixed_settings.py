"""What `fairshare serve` reads once, when it starts: the rate-limit service's address and backend, and
mutual TLS to the control plane. A control plane whose first config was refused starts the service with
the first config it serves (before, it never started, and Envoy was sent a rate-limit cluster nothing
listened on: a closed failure mode refused every request); a later config that changes those settings is
refused naming the field (before, the reload said ok and Envoy got the change the service never made)."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.synth import small_config
from tests.e2e.conftest import eventually
from xds_server.local.processes import Child, free_port, wait_http


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        return dict(json.load(resp))


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def metrics_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_the_rate_limit_service_starts_with_the_first_config_served_and_keeps_its_settings(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, free_port())
    platform = cfg / "platform.yaml"
    platform.write_text("ratelimit: {enabled: true}\n")
    tenant = cfg / "tenants" / "acme.yaml"
    good = tenant.read_text()
    tenant.write_text(good.replace("tier: pro", "tier: platinum"))
    status_port, rl_port = free_port(), free_port()
    log = tmp_path / "control-plane.log"
    child = Child("control-plane", [
        sys.executable, "-m", "xds_server", "serve", "--config", str(cfg), "--state", str(tmp_path / "state"),
        "--xds-port", str(free_port()), "--status-port", str(status_port), "--ratelimit-port", str(rl_port)],
        log_file=log).start()
    try:
        wait_http(f"http://127.0.0.1:{status_port}/livez", 60, proc=child.proc, log_file=log)
        assert status(status_port)["last_reload"]["ok"] is False
        assert not listening(rl_port) and metrics_status(status_port) == 404

        # The file fixed: the first config served, and with it the service it names.
        tenant.write_text(good)
        assert eventually(lambda: status(status_port)["config_version"] is not None, timeout=60), log.read_text()
        assert eventually(lambda: listening(rl_port), timeout=30), log.read_text()[-3000:]
        assert metrics_status(status_port) == 200
        serving = status(status_port)["config_version"]

        # Settings read at start: a change is refused, naming the field, and the last config keeps serving.
        for edit, field in (("ratelimit: {enabled: true, backend: redis, redis_url: 'redis://:pw@127.0.0.1:1/0'}\n",
                             "ratelimit.backend"), ("ratelimit: {enabled: false}\n", "ratelimit.enabled")):
            platform.write_text(edit)
            assert eventually(lambda f=field: f in (status(status_port)["last_reload"]["error"] or ""),  # type: ignore[misc]
                              timeout=60), log.read_text()[-3000:]
            last = status(status_port)["last_reload"]
            assert "restart the control plane to change it" in last["error"] and ":pw@" not in last["error"]
            assert status(status_port)["config_version"] == serving
        # Limits are not among them: they reload with the config.
        platform.write_text("ratelimit: {enabled: true, burst_fraction: 0.5}\n")
        assert eventually(lambda: status(status_port)["last_reload"]["ok"] is True, timeout=60), log.read_text()[-3000:]
        assert listening(rl_port) and child.alive()
    finally:
        child.stop()
