"""`fairshare run` (what `make run` runs): comes up, prints where to call, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.loadgen import infer_body
from bench.synth import small_config
from tests.e2e.conftest import post
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.config import load_config
from xds_server.local.processes import free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    stack = [pid]
    while stack:
        p = stack.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            for c in map(int, children):
                if c not in out:
                    out.add(c)
                    stack.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_run_serves_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    gateway = free_port()
    cfg = small_config(tmp_path, gateway)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds_server", "run", "--config", str(cfg), "--state", str(state),
         "--xds-port", str(free_port()), "--status-port", str(free_port())],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops every process" in line:
                break
        banner = "".join(lines)
        assert f"http://127.0.0.1:{gateway}" in banner, banner
        assert "fairshare token acme" in banner
        children = descendants(proc.pid)
        assert len(children) >= 4, children  # control plane, 2 runtimes, Envoy

        token = issue_token(SigningKey.load_or_create(state), load_config(cfg).platform.auth, "acme")
        reply = post(f"http://127.0.0.1:{gateway}/v2/models/classifier/infer", infer_body(["great"]), token)
        assert reply.status == 200, reply.body

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        time.sleep(0.5)
        assert not [p for p in children if alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_refuses_clearly_when_the_gateway_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cfg = small_config(tmp_path, port)
        done = subprocess.run(
            [sys.executable, "-m", "xds_server", "run", "--config", str(cfg), "--state", str(tmp_path / "state"),
             "--xds-port", str(free_port()), "--status-port", str(free_port())],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 1
    assert f"cannot bind '127.0.0.1:{port}': Address already in use" in done.stderr
    assert "Fairshare is running" not in done.stdout
