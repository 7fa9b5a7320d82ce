"""Run the control plane: xDS over gRPC, status over HTTP, and the config reload loop."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from xds_server.auth.keys import SigningKey
from xds_server.controlplane.http import status_app
from xds_server.controlplane.service import ControlPlane
from xds_server.envoy.process import EnvoyError, find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.xds.server import XdsServer
from xds_server.xds.store import SnapshotStore

log = logging.getLogger("fairshare.controlplane")


@dataclass(frozen=True)
class ServeOptions:
    config_dir: Path
    state_dir: Path
    endpoints_file: Path | None = None
    host: str = "127.0.0.1"
    xds_port: int = 18000
    status_port: int = 18001
    listen_address: str = "0.0.0.0"


async def serve(opts: ServeOptions) -> None:
    key = SigningKey.load_or_create(opts.state_dir)
    store = SnapshotStore()
    cp = ControlPlane(opts.config_dir, opts.endpoints_file, key.jwks(), store, opts.listen_address,
                      validator=_validator())
    first = cp.reload()
    if not first.ok:
        log.error("no valid config yet: Envoy gets nothing until the config is fixed; watching %s", opts.config_dir)

    xds = XdsServer(store, opts.host, opts.xds_port)
    await xds.start()
    runner = web.AppRunner(status_app(cp), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, opts.host, opts.status_port).start()
    log.info("control plane up: xDS on %s:%d, status on http://%s:%d/status",
             opts.host, xds.bound_port, opts.host, opts.status_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(cp.watch(stop))
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await xds.stop(0.5)
        await runner.cleanup()
        log.info("control plane stopped")


def _validator() -> EnvoyValidator | None:
    try:
        return EnvoyValidator(find_envoy())
    except EnvoyError as err:
        log.warning("changes are published without Envoy's pre-validation: %s", err)
        return None
