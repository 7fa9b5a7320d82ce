"""Process life: graceful drain in-process, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from inference_images.runtime import healthcheck
from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.registry import default_loaders
from tests.runtime.conftest import Reply, start_server, text_request

REPO = Path(__file__).resolve().parents[2]


class SlowModel(LexiconSentimentModel):
    started = threading.Event()

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        self.started.set()
        time.sleep(0.5)
        return super().predict(inputs)


def test_shutdown_finishes_in_flight_requests_and_fails_readiness_while_draining() -> None:
    loaders = default_loaders()
    loaders.register("slow", lambda name, version: SlowModel(name, version, negation=False))
    server = start_server("slow:v1:slow", loaders=loaders, drain_delay_s=0.4, shutdown_grace_s=5)
    server.wait_ready(5)
    SlowModel.started.clear()
    replies: list[Reply] = []
    worker = threading.Thread(target=lambda: replies.append(server.infer("/v2/models/slow/infer", text_request("x"))))
    worker.start()
    assert SlowModel.started.wait(5)

    server.signal_stop()
    time.sleep(0.1)
    draining = server.get("/v2/health/ready")
    assert draining.status == 503 and draining.body["reasons"] == {"server": "draining"}
    server.stop()
    worker.join(5)
    assert [r.status for r in replies] == [200]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def run_cli(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "inference_images.runtime", *args],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def test_cli_serves_light_model_without_torch_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "runtime.log"
    proc = run_cli(
        ["--region", "us-east-1", "--pool", "cpu-a", "--host", "127.0.0.1", "--port", str(port),
         "--replica", "r-cli", "--model", "classifier:v1:lexicon", "--model", "classifier:v2:lexicon-negation"],
        log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        # Until ready or dead; how long it takes is the benchmark's business (pytest-timeout guards a hang).
        while http_status(base + "/v2/health/ready") != 200:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)

        assert healthcheck.main(["--port", str(port)]) == 0

        secret = "alice@example.com card 4111-1111-1111-1111"
        body = json.dumps(text_request(secret)).encode()
        status = http_status(base + "/v2/models/classifier/infer", body, {"x-fairshare-tenant": "acme"})
        assert status == 200

        # A light-only process must never map torch: that is what keeps it small and fast to start.
        maps = Path(f"/proc/{proc.pid}/maps")
        if maps.exists():
            assert "libtorch" not in maps.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert healthcheck.main(["--port", str(port), "--timeout", "0.5"]) == 1
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["msg"] for r in records]
    assert "listening" in messages and "shutdown requested" in messages and messages[-1] == "stopped"
    assert all(r["replica"] == "r-cli" for r in records)
    assert any(r["msg"] == "request" and r["status"] == 200 for r in records)
    assert "alice" not in log.read_text()  # payloads never reach the logs


@pytest.mark.parametrize(
    ("model", "expected"),
    [("embedder:v1:nosuchloader", "unknown loader 'nosuchloader'"), ("embedder-v1", "name:version:loader")],
)
def test_cli_refuses_bad_model_configuration(tmp_path: Path, model: str, expected: str) -> None:
    log = tmp_path / "runtime.log"
    proc = run_cli(["--region", "us-east-1", "--pool", "p", "--port", "0", "--model", model], log)
    assert proc.wait(15) == 2
    assert expected in log.read_text()
