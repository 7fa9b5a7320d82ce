"""A runtime process's life: listen, load models in the background, serve, drain, stop.

Listening starts before loading so liveness answers at once (a slow MiniLM load must not get the pod
killed) while readiness stays 503 with reasons until every model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from aiohttp import web

from inference_images.runtime.metrics import RuntimeMetrics
from inference_images.runtime.models.registry import ModelRepository
from inference_images.runtime.scheduling import Admission, BatchingConfig, PolicyOptions, Scheduler, build_scheduler
from inference_images.runtime.server import RuntimeState, build_app
from inference_images.runtime.settings import Settings

log = logging.getLogger(__name__)


async def serve(
    settings: Settings,
    repository: ModelRepository,
    stop: asyncio.Event,
    *,
    scheduler: Scheduler | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve until ``stop`` is set, then drain and return. ``on_listening`` gets the bound port."""
    metrics = RuntimeMetrics()
    scheduler = scheduler or build_scheduler(
        settings.scheduler,
        events=metrics,
        admission=Admission(settings.default_max_queue),
        batching=BatchingConfig(dict(settings.batch_limits)),
        options=PolicyOptions(idle_credit_s=settings.idle_credit_s),
    )
    state = RuntimeState(settings=settings, repository=repository, scheduler=scheduler, metrics=metrics)
    runner = web.AppRunner(
        build_app(state),
        access_log=None,  # the app logs requests itself, without payloads
        handle_signals=False,  # __main__ owns signals
        shutdown_timeout=settings.shutdown_grace_s,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = _bound_port(runner, settings.port)
        log.info(
            "listening",
            extra={
                "host": settings.host,
                "port": port,
                "region": settings.region,
                "pool": settings.pool,
                "replica": settings.replica,
                "scheduler": settings.scheduler,
                "models": [spec.key for spec in settings.models],
            },
        )
        if on_listening is not None:
            on_listening(port)

        # Daemon: a process told to stop mid-load exits without waiting for the load to finish.
        threading.Thread(target=repository.load_all, name="model-loader", daemon=True).start()
        await stop.wait()

        state.draining = True
        log.info("draining", extra={"drain_delay_s": settings.drain_delay_s, "grace_s": settings.shutdown_grace_s})
        if settings.drain_delay_s > 0:
            # Keep serving while the gateway notices readiness failing, so no request meets a closed port.
            await asyncio.sleep(settings.drain_delay_s)
    finally:
        # Closes the listener, lets in-flight requests finish within the grace period, cancels the rest.
        await runner.cleanup()
        await scheduler.close()
    log.info("stopped")


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
