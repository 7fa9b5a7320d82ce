"""Child processes that cannot outlive us: each gets SIGTERM if the launcher dies, and stop() reaps all."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("fairshare.local")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux only: the kernel signals the child when the launcher exits, even on SIGKILL.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Ports this process has handed out. The kernel may give the same ephemeral port to two binds in a row once
# the first socket is closed, and a pick is not held until its user binds it: two picks for one process (a
# replica's data and admin ports) could collide, and it would fail to start with "address already in use".
_issued: set[int] = set()
_issued_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never one this process handed out before."""
    with _issued_lock:
        while True:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _issued:
                _issued.add(port)
                return port


def free_ports_in_a_row(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports nothing listens on now and this process never handed out (a
    region with cells listens on its gateway port and the next one per cell, locally)."""
    with _issued_lock:
        while True:
            with socket.socket() as s:
                s.bind((host, 0))
                first = int(s.getsockname()[1])
            ports = range(first, first + count)
            if ports[-1] <= 65535 and not _issued.intersection(ports) and all(_bindable(host, p) for p in ports):
                _issued.update(ports)
                return first


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_http(url: str, timeout: float, ok: tuple[int, ...] = (200,), proc: subprocess.Popen[bytes] | None = None,
              log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} was ready"
                               + _tail(log_file))
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            last = str(err)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s (last: {last})" + _tail(log_file))


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {path} ---\n" + "\n".join(text)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_file: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})}, preexec_fn=_die_with_parent,
        )
        out.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Supervisor:
    children: dict[str, Child] = field(default_factory=dict)

    def start(self, child: Child) -> Child:
        if child.name in self.children and self.children[child.name].alive():
            raise RuntimeError(f"{child.name} is already running")
        self.children[child.name] = child.start()
        log.debug("started %s (pid %s)", child.name, child.proc.pid if child.proc else "?")
        return child

    def stop(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child:
            child.stop()

    def stop_all(self) -> None:
        # Signal everyone first so they shut down in parallel, then wait.
        for child in self.children.values():
            if child.alive() and child.proc:
                child.proc.terminate()
        for child in list(self.children.values()):
            child.stop()
        self.children.clear()
