"""The first config load, retried: a control plane that starts before OPA (or before its config source
answers) keeps trying with backoff instead of waiting for a file change that may never come. Until
one load succeeds, readiness fails (no Envoy is sent here) and liveness still passes (the loop runs),
so a slow start is never a crash loop."""

from __future__ import annotations

import asyncio
import logging

from xds_server.controlplane.service import ControlPlane

log = logging.getLogger("fairshare.controlplane")

INITIAL_DELAY_S = 0.5
MAX_DELAY_S = 30.0


async def retry_until_loaded(cp: ControlPlane, stop: asyncio.Event, *, initial_s: float = INITIAL_DELAY_S,
                             max_s: float = MAX_DELAY_S) -> None:
    """Reload with exponential backoff until some config is published (by this loop or the watcher)."""
    delay = initial_s
    attempt = 1
    while cp.compiled is None:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        if cp.compiled is not None:
            return  # the file watcher published one meanwhile
        attempt += 1
        outcome = await cp.reload_off_loop()
        if outcome.ok:
            log.info("first config published after %d attempts", attempt)
            return
        delay = min(max_s, delay * 2)
        log.warning("first config load failed (attempt %d); retrying in %.1fs", attempt, delay)
