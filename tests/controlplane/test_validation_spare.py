"""The validator's spare Envoy (xds_server/envoy/spare.py): a check it runs gives the same verdict as a fresh
Envoy's, a spare that died costs only its speed, and no spare outlives its control plane."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.controlplane.test_validation import compile_us, with_bad_regex
from tests.e2e.conftest import eventually
from xds_server.compiler import Compiler
from xds_server.envoy.process import find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[2]


def exited(pid: int) -> Callable[[], bool]:
    def gone() -> bool:
        stat = Path(f"/proc/{pid}/stat")
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return state in ("Z", "X")  # a zombie has exited; its parent has not reaped it yet

    return gone


def spare_pid(validator: EnvoyValidator) -> int:
    spare = validator.spare
    assert spare is not None
    assert eventually(lambda: spare.ready_pid() is not None, interval=0.01)
    pid = spare.ready_pid()
    assert pid is not None
    return pid


@pytest.fixture(scope="module")
def snapshots() -> tuple[Snapshot, Snapshot]:
    good = compile_us(ROOT / "config", Compiler())
    return good, with_bad_regex(good, "tenant/acme")


def test_a_spare_checks_the_next_change_with_a_fresh_envoys_verdict(snapshots: tuple[Snapshot, Snapshot]) -> None:
    good, bad = snapshots
    fresh = EnvoyValidator(find_envoy(), keep_spare=False).check(good, bad)
    validator = EnvoyValidator(find_envoy())
    try:
        assert validator.check(None, good) is None  # the first check starts the spare
        for _ in range(2):
            waiting = spare_pid(validator)
            assert validator.check(good, bad) == fresh  # Envoy's own reason, without the spare's file name
            assert fresh is not None and "missing ]" in fresh and "/tmp/" not in fresh
            assert eventually(exited(waiting))  # that spare ran this check: it validates once, then exits
            waiting = spare_pid(validator)
            assert validator.check(None, good) is None
            assert eventually(exited(waiting))
    finally:
        validator.close()


def test_a_dead_spare_costs_only_its_speed(snapshots: tuple[Snapshot, Snapshot]) -> None:
    good, bad = snapshots
    validator = EnvoyValidator(find_envoy())
    try:
        validator.check(None, good)
        os.kill(spare_pid(validator), 9)
        reason = validator.check(good, bad)
        assert reason is not None and "missing ]" in reason
        os.kill(spare_pid(validator), 9)  # a new spare was started after that check
        assert validator.check(None, good) is None
    finally:
        validator.close()


def test_closing_or_dropping_a_validator_stops_its_spare(snapshots: tuple[Snapshot, Snapshot]) -> None:
    good, _ = snapshots
    validator = EnvoyValidator(find_envoy())
    validator.check(None, good)
    pid = spare_pid(validator)
    validator.close()
    assert eventually(exited(pid))
    dropped = EnvoyValidator(find_envoy())
    dropped.check(None, good)
    pid = spare_pid(dropped)
    del dropped
    assert eventually(exited(pid))


def test_a_spare_dies_with_a_control_plane_that_crashed(tmp_path: Path) -> None:
    # os._exit: no finaliser, no atexit; only the parent-death signal can stop the spare blocked on its FIFO.
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.controlplane.test_validation_spare import spare_pid
        from tests.controlplane.test_validation import compile_us
        from xds_server.compiler import Compiler
        from xds_server.envoy.process import find_envoy
        from xds_server.envoy.validate import EnvoyValidator
        from pathlib import Path
        validator = EnvoyValidator(find_envoy())
        validator.check(None, compile_us(Path({str(ROOT / "config")!r}), Compiler()))
        print(spare_pid(validator), flush=True)
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    assert eventually(exited(pid))

