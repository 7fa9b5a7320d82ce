"""A runtime process's life: listen, load models in the background, serve, drain, stop.

Listening starts before loading so liveness answers at once (a slow MiniLM load must not get the pod
killed) while readiness stays 503 with reasons until every model is loaded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable

from aiohttp import web

from inference_images.runtime.admin import AdminState, build_admin_app
from inference_images.runtime.metrics import RuntimeMetrics
from inference_images.runtime.models import onnx_format
from inference_images.runtime.models.cache import MIB, ModelCache
from inference_images.runtime.models.own import OwnModelLoader
from inference_images.runtime.models.registry import ModelRepository
from inference_images.runtime.pii.keys import KeyRing, parse_source
from inference_images.runtime.scheduling import Admission, BatchingConfig, PolicyOptions, Scheduler, build_scheduler
from inference_images.runtime.server import RuntimeState, build_app, build_health_app
from inference_images.runtime.settings import Settings
from inference_images.runtime.tls import CertificateReloader

log = logging.getLogger(__name__)


async def serve(
    settings: Settings,
    repository: ModelRepository,
    stop: asyncio.Event,
    *,
    scheduler: Scheduler | None = None,
    on_listening: Callable[[int], None] | None = None,
    on_admin_listening: Callable[[int], None] | None = None,
    on_health_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve until ``stop`` is set, then drain and return. ``on_listening`` gets the bound port, and
    ``on_admin_listening`` the repository extension's (when ``settings.admin_port`` is set)."""
    metrics = RuntimeMetrics()
    scheduler = scheduler or build_scheduler(
        settings.scheduler,
        events=metrics,
        admission=Admission(settings.default_max_queue),
        batching=BatchingConfig(dict(settings.batch_limits)),
        options=PolicyOptions(idle_credit_s=settings.idle_credit_s),
    )
    cache = ModelCache(
        OwnModelLoader(repository.store, repository),
        budget_bytes=int(settings.cache_budget_mb * MIB),
        loader_threads=settings.loader_threads,
        min_residency_s=settings.min_residency_s,
        charge=scheduler.charge,
        events=metrics,
        pinned_bytes=functools.partial(_catalog_bytes, repository),
    )
    # Built before anything listens: a bad source (no AWS region, a bad spec) is a configuration error.
    keys = (KeyRing(parse_source(settings.pseudonymisation_keys), settings.pseudonymisation_key_ttl_s)
            if settings.pseudonymisation_keys else None)
    state = RuntimeState(settings=settings, repository=repository, scheduler=scheduler, metrics=metrics, cache=cache,
                         keys=keys)
    admin_identity = settings.tls.admin_identity if settings.tls is not None else None
    admin_state = AdminState(repository, cache, admin_identity, store=repository.store)
    admin = web.AppRunner(build_admin_app(admin_state), access_log=None, handle_signals=False)
    runner = web.AppRunner(
        build_app(state),
        access_log=None,  # the app logs requests itself, without payloads
        handle_signals=False,  # __main__ owns signals
        shutdown_timeout=settings.shutdown_grace_s,
        # Request bodies are decoded by the handler (runtime/encoding.py): aiohttp's parser answered
        # codings it cannot decode in plain text before any handler ran, and bodies that did not decode 500.
        auto_decompress=False,
    )
    health = web.AppRunner(build_health_app(state), access_log=None, handle_signals=False)
    # Before anything listens: a bad certificate is a configuration error, not a half-up server.
    tls = CertificateReloader(settings.tls, settings.tls_reload_s) if settings.tls is not None else None
    rotation_stop = asyncio.Event()
    rotation: asyncio.Task[None] | None = None
    await runner.setup()
    await admin.setup()
    await health.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=tls.context if tls else None)
        await site.start()
        port = _bound_port(runner, settings.port)
        if tls is not None:
            rotation = asyncio.create_task(tls.run(rotation_stop), name="tls-reload")
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
                "mtls": tls is not None,
            },
        )
        if on_listening is not None:
            on_listening(port)
        if settings.admin_port is not None:
            # Same address as the data plane; only the port differs, and no Envoy cluster points at it.
            # The same TLS context too, so one reloader rotates both; the app checks the other name.
            await web.TCPSite(admin, settings.host, settings.admin_port,
                              ssl_context=tls.context if tls else None).start()
            admin_port = _bound_port(admin, settings.admin_port)
            log.info("repository extension listening",
                     extra={"host": settings.host, "port": admin_port, "mtls": tls is not None})
            if on_admin_listening is not None:
                on_admin_listening(admin_port)

        if settings.health_port is not None:
            await web.TCPSite(health, settings.host, settings.health_port).start()
            health_port = _bound_port(health, settings.health_port)
            log.info("health probes listening", extra={"host": settings.host, "port": health_port})
            if on_health_listening is not None:
                on_health_listening(health_port)

        # Daemon: a process told to stop mid-load exits without waiting for the load to finish.
        threading.Thread(target=_load_catalog, args=(repository,), name="model-loader", daemon=True).start()
        await stop.wait()

        state.draining = True
        log.info("draining", extra={"drain_delay_s": settings.drain_delay_s, "grace_s": settings.shutdown_grace_s})
        if settings.drain_delay_s > 0:
            # Keep serving while the gateway notices readiness failing, so no request meets a closed port.
            await asyncio.sleep(settings.drain_delay_s)
    finally:
        # Closes the listener, lets in-flight requests finish within the grace period, cancels the rest.
        rotation_stop.set()
        if rotation is not None:
            await rotation
        await runner.cleanup()
        await admin.cleanup()
        await health.cleanup()
        await scheduler.close()
        await cache.close()
    log.info("stopped")


def _load_catalog(repository: ModelRepository) -> None:
    try:
        # onnxruntime's one-time set-up, spent before any tenant's load is measured and charged for it.
        onnx_format.warm_up()
    except Exception as exc:  # a replica without onnxruntime still serves its catalog
        log.warning("onnxruntime unavailable: own models will fail to load", extra={"reason": str(exc)})
    repository.load_all()


def _catalog_bytes(repository: ModelRepository) -> int:
    """What the pinned catalog models hold, off the cache's budget (those whose footprint is measured: the
    onnx loader's; the built-in loaders' weights are part of the image's fixed cost)."""
    return sum(int(getattr(entry.model, "footprint_bytes", 0) or 0) for entry in repository.entries())


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
