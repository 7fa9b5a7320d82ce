"""The embedded backend: regorus (a Rust Rego engine) in a worker process of its own.

Why a process: regorus holds the GIL for a whole evaluation and has no time limit of its own, so a
runaway policy evaluated in-process would freeze the control plane's event loop (and every xDS
stream with it) for as long as it runs. In a worker process the control plane keeps serving, the
time limit is enforced by ending the worker, and the next query starts a fresh one with the last
good policies.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from xds_server.policy.engine import PolicyError, locate
from xds_server.policy.sources import PolicySources


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, timeout_seconds: float = 10.0) -> None:
        self.timeout_seconds = timeout_seconds
        self._proc: subprocess.Popen[bytes] | None = None
        self._loaded: bytes | None = None
        self._root: Path | None = None  # the loaded policies' directory: an error's file is named under it
        self._lock = threading.Lock()  # one request in flight per worker

    def load(self, sources: PolicySources, platform: dict[str, Any]) -> None:
        request = _line({"op": "load", "modules": dict(sources.modules),
                         "data": {"fairshare": {"platform": platform}}})
        with self._lock:
            self._call(request, where="loading policies", root=sources.root)
            self._loaded, self._root = request, sources.root

    def query(self, path: str, input: Any) -> Any:
        with self._lock:
            if self._loaded is None:
                raise PolicyError(self.name, path, "no policies loaded")
            return self._call(_line({"op": "query", "path": path, "input": input}), where=path, root=self._root)

    def _call(self, request: bytes, *, where: str, root: Path | None = None) -> Any:
        proc = self._worker(where)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
            reply = _read_line(proc.stdout, time.monotonic() + self.timeout_seconds)
        except BrokenPipeError:
            reply = b""
        if reply is None:
            self._kill()
            raise PolicyError(self.name, where,
                              f"evaluation took longer than {self.timeout_seconds:g}s and was stopped")
        if not reply:
            self._kill()
            raise PolicyError(self.name, where, "the policy worker process died")
        answer = json.loads(reply)
        if not answer["ok"]:
            raise _error(self.name, where, answer["error"], root)
        return answer["value"]

    def _worker(self, where: str) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "xds_server.policy._regorus_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if self._loaded is not None:  # a fresh worker after a timeout gets the last good policies
            self._call(self._loaded, where=where, root=self._root)
        return self._proc

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                assert proc.stdin is not None
                proc.stdin.close()  # the worker exits at end of input
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _error(backend: str, where: str, message: str, root: Path | None) -> PolicyError:
    """regorus' error as a PolicyError: where it names a place (`--> quota/quota.rego:36:1` over a caret
    diagram, then `error: <reason>`), the file under the policy directory, its line and column, and the
    reason alone."""
    at = locate(message)
    if at is None:
        return PolicyError(backend, where, message)
    file = str(root / at.file) if root is not None else at.file
    return PolicyError(backend, where, at.reason, file=file, line=at.line, column=at.column)


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _read_line(stream: IO[bytes], deadline: float) -> bytes | None:
    """One reply line, or None at the deadline. The worker writes each reply as a single line."""
    chunks: list[bytes] = []
    fd = stream.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b""
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)
