"""A validate-mode Envoy started ahead of need, for xds_server/envoy/validate.py.

An Envoy process costs 50-80 ms here before it reads its config (loading the binary, registering every
extension): most of what validating a one-tenant edit costs. The spare pays that while nothing waits on
it, then blocks opening a FIFO named bootstrap.pb (the suffix tells Envoy it is binary proto; Envoy
refuses a path that resolves into /dev, so it cannot read stdin). A check writes the bootstrap into the
FIFO and the spare validates it in about 15 ms. One spare is kept; a check that finds none, or one that
died, is run by a fresh Envoy as before.

A spare blocked on its FIFO would wait forever if the control plane died, so it is started with a parent-
death signal (`setpriv --pdeathsig KILL`). Linux sends that signal when the *thread* that started the child
exits, so spares are started by a thread of their own that lives as long as the process. Without setpriv
(not Linux), there is no spare and every check starts its own Envoy.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("fairshare.envoy.validate")

# How long a check waits for a spare still starting to open its FIFO before running a fresh Envoy instead.
OPEN_WAIT_S = 1.0
# In a spare's own folder: the FIFO it reads its config from (`.pb`: binary proto) and what it prints.
_FIFO, _OUTPUT = "bootstrap.pb", "output.txt"


def validate_argv(binary: str, config: str) -> list[str]:
    return [binary, "--mode", "validate", "-c", config, "-l", "error", "--disable-hot-restart"]


@dataclass
class _Spare:
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def fifo(self) -> Path:
        return self.workdir / _FIFO

    @property
    def output(self) -> Path:
        return self.workdir / _OUTPUT

    def discard(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class SpareEnvoy:
    binary: str
    _setpriv: str | None = field(default_factory=lambda: shutil.which("setpriv"))
    _ready: _Spare | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wanted: threading.Event = field(default_factory=threading.Event)
    _starter: threading.Thread | None = None
    _closed: bool = False

    def validate(self, bootstrap: bytes, timeout_s: float) -> tuple[int, str] | None:
        """(Envoy's exit status, its output) for `bootstrap`, validated by the spare; None when no spare was
        ready (the caller runs a fresh Envoy). Either way another spare is started for the next check."""
        with self._lock:
            spare, self._ready = self._ready, None
        if spare is None:
            self._want()
            return None
        try:
            deadline = time.monotonic() + timeout_s
            if not _feed(spare, bootstrap, time.monotonic() + OPEN_WAIT_S):
                return None  # it died, or never reached its FIFO: a fresh Envoy does this check
            _wait_exit(spare.proc, max(0.0, deadline - time.monotonic()))  # TimeoutExpired: the caller's to report
            if spare.proc.returncode < 0:
                return None  # killed by a signal (before or while it read): a fresh Envoy does this check
            return spare.proc.returncode, spare.output.read_text(errors="replace")
        finally:
            spare.discard()
            self._want()  # after this check, not during it: the next spare's start does not slow this one

    def ready_pid(self) -> int | None:
        """The pid of the spare waiting for the next check, if one is ready."""
        with self._lock:
            spare = self._ready
        return spare.proc.pid if spare is not None and spare.proc.poll() is None else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._ready = self._ready, None
        self._wanted.set()
        if spare is not None:
            spare.discard()

    def _want(self) -> None:
        if self._setpriv is None or self._closed:
            return
        with self._lock:
            if self._starter is None:
                self._starter = threading.Thread(target=self._keep_one, name="fairshare-validate-spare", daemon=True)
                self._starter.start()
        self._wanted.set()

    def _keep_one(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            with self._lock:
                if self._closed:
                    return
                ready = self._ready is not None and self._ready.proc.poll() is None
                dead, self._ready = (None, self._ready) if ready else (self._ready, None)
            if dead is not None:
                dead.discard()
            if ready:
                continue
            try:
                spare = self._start()
            except OSError as err:
                log.warning("could not start a spare Envoy for validation (%s); each check starts its own", err)
                return
            with self._lock:
                closed = self._closed
                if not closed:
                    self._ready = spare
            if closed:
                spare.discard()
                return

    def _start(self) -> _Spare:
        assert self._setpriv is not None
        workdir = Path(tempfile.mkdtemp(prefix="fairshare-validate-spare-"))
        os.mkfifo(workdir / _FIFO, 0o600)
        with open(workdir / _OUTPUT, "wb") as output:
            argv = [self._setpriv, "--pdeathsig", "KILL", *validate_argv(self.binary, str(workdir / _FIFO))]
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        # It starts while the control plane publishes; below the control plane's priority, it waits its turn.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, proc.pid, 10)
        return _Spare(proc, workdir)


def _feed(spare: _Spare, bootstrap: bytes, open_by: float) -> bool:
    """Write `bootstrap` into the spare's FIFO; False if it is not reading (dead, or still starting)."""
    while True:
        if spare.proc.poll() is not None:
            return False
        try:
            # Non-blocking: with no reader yet (Envoy still starting, or dead) this fails instead of hanging.
            fd = os.open(spare.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as err:
            if err.errno != errno.ENXIO or time.monotonic() > open_by:
                return False
            time.sleep(0.002)
    try:
        os.set_blocking(fd, True)
        with open(fd, "wb", closefd=True) as fifo:
            fifo.write(bootstrap)
    except BrokenPipeError:
        return False
    return True


def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Popen.wait(timeout) polls with growing sleeps (an exit at 15 ms is seen at 31 ms); a pidfd wakes
    this at the exit itself."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or it already exited and was reaped
        proc.wait(timeout=timeout_s)
        return
    try:
        if not select.select([pidfd], [], [], timeout_s)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    finally:
        os.close(pidfd)
    proc.wait()
