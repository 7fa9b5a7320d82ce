"""A long command tells a person's terminal it is still at it; a pipe or a log gets nothing extra."""

from __future__ import annotations

import io
import time

from xds_server.still_working import still_working


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_is_told_after_the_first_wait_and_then_every_so_often() -> None:
    out = Terminal()
    with still_working("fairshare: still reading", out, first_after_s=0.05, every_s=0.05):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("fairshare: still reading... (") for line in lines), lines


def test_a_quick_command_or_a_pipe_prints_nothing() -> None:
    quick = Terminal()
    with still_working("x", quick, first_after_s=5):
        pass
    piped = io.StringIO()
    with still_working("x", piped, first_after_s=0.01, every_s=0.01):
        time.sleep(0.1)
    assert quick.getvalue() == "" and piped.getvalue() == ""
