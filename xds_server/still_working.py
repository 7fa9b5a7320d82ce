"""A line on a person's terminal while a command works for longer than a few seconds.

`fairshare validate` of 12,000 tenant files reads, checks and decides every one (10-40 s on 2 cores) and has
nothing to print until it is done; a silent terminal looks hung. Only on a terminal: a pipe or a log gets the
command's output alone."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

FIRST_AFTER_S = 5.0
EVERY_S = 15.0


@contextmanager
def still_working(what: str, stream: TextIO | None = None, first_after_s: float = FIRST_AFTER_S,
                  every_s: float = EVERY_S) -> Iterator[None]:
    """Print `<what>... (Ns)` to `stream` (stderr) after `first_after_s`, then every `every_s`, until the
    block ends; nothing if it ends sooner, or if the stream is not a terminal."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def tell() -> None:
        wait = first_after_s
        while not done.wait(wait):
            print(f"{what}... ({time.monotonic() - started:.0f}s)", file=out, flush=True)
            wait = every_s

    thread = threading.Thread(target=tell, name="still-working", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
