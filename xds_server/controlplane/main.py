"""Run the control plane: xDS over gRPC, status over HTTP, and the config reload loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from xds_server.audit import AuditError, AuditLog
from xds_server.audit.trail import ControlPlaneAudit
from xds_server.auth.keys import SigningKey
from xds_server.cells import peers
from xds_server.compiler import Compiler
from xds_server.config import PlatformConfig
from xds_server.config.errors import Problem
from xds_server.config.model import RateLimitBackend
from xds_server.controlplane import grpc_tls as control_plane_tls
from xds_server.controlplane.first_load import retry_until_loaded
from xds_server.controlplane.http import status_app
from xds_server.controlplane.service import ControlPlane
from xds_server.endpoints import open_source
from xds_server.envoy.process import EnvoyError, find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.ratelimit.backends import Backend
from xds_server.ratelimit.redis_auth import with_env_password
from xds_server.ratelimit.server import RateLimitServer
from xds_server.sources import config as config_sources
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
    # Override platform.yaml's ratelimit port (a launcher's free port) and backend (a shared Redis).
    ratelimit_port: int | None = None
    ratelimit_redis_url: str | None = None
    # The audit trail (xds_server/audit): every applied or refused change is appended there; None: none.
    audit_log: AuditLog | None = None
    # Where the trail is shipped: the active file is sealed (and so shipped) once its first record is this
    # old, however quiet the control plane; 0: only at the size limit and at a stop.
    audit_seal_after_s: float = 0.0
    # Where Envoy dials the rate-limit service, if not --host: a name every replica shares (the chart's
    # control-plane Service), so that every replica compiles the same snapshot from the same config.
    ratelimit_address: str | None = None
    # SO_REUSEPORT on the rate-limit port: the other control planes on this host bind it too (`fairshare run
    # --control-planes N`); the kernel spreads Envoy's connections over the live ones, like a Service.
    ratelimit_shared_port: bool = False
    # Override platform.yaml's gateway.upstream_tls.sds_dir (a launcher's local CA).
    upstream_tls_dir: str | None = None
    # The control plane's certificate (tls.crt, tls.key, ca.crt): xDS and the rate-limit service serve
    # mutual TLS, only the gateway's client certificate (platform.gateway.upstream_tls.control_plane).
    tls_dir: Path | None = None
    # Where the replicas come from: "file" (endpoints_file) or "kubernetes" (EndpointSlices).
    endpoints_from: str = "file"
    kubeconfig: Path | None = None  # kubernetes: None is in-cluster config (or $KUBECONFIG outside a pod)
    namespace: str | None = None  # kubernetes: None is the pod's own namespace
    # Where the config and policies come from (xds_server/sources/config): None is config_dir and the policy
    # directory; `s3://bucket/key` (a bundle, polled every poll_seconds) or `git:/path/to/checkout`.
    config_source: str | None = None
    poll_seconds: float = 10.0
    source_dir: Path | None = None  # where an S3 source unpacks revisions; None: <state_dir>/config-source
    # Every cell of a region on this machine (`fairshare run`): cell k listens on gateway_port + 1 + k.
    local_cell_ports: bool = False
    # The region this control plane runs in (a cluster's, `--region`): only the tenants allowed there have
    # their local model artifacts read and checked (the chart ships no others); None: every tenant's.
    region: str | None = None
    # Every control-plane replica's status address (host:port; a name resolves to all its addresses), asked
    # about moves between cells (xds_server/cells/peers.py); empty: no peers.
    peers: tuple[str, ...] = ()
    # The signing key's file, where it is not <state_dir>/signing-key.pem: a Secret mounted read-only (the
    # chart's), loaded and never created; the state dir stays writable (the audit log, S3 revisions).
    signing_key: Path | None = None


async def serve(opts: ServeOptions) -> None:
    key = SigningKey.load(opts.signing_key) if opts.signing_key else SigningKey.load_or_create(opts.state_dir)
    store = SnapshotStore()
    rl_address = (opts.ratelimit_address or opts.host, opts.ratelimit_port) if opts.ratelimit_port is not None else None
    source = open_source(opts.endpoints_from, opts.endpoints_file, opts.kubeconfig, opts.namespace)
    if source is not None:
        # Before the first compile: publishing without the endpoints would take every pool out of service.
        await source.start()
    unpack_dir = opts.source_dir or opts.state_dir / "config-source"
    given = config_sources.from_spec(opts.config_source, opts.config_dir, unpack_dir, opts.poll_seconds)
    cp = ControlPlane(given.config_dir, opts.endpoints_file, key.jwks(), store, opts.listen_address,
                      endpoint_source=source, config_source=given, admin_tls_dir=opts.tls_dir,
                      validator=_validator(), compiler=Compiler(ratelimit_address=rl_address,
                                        upstream_tls_dir=opts.upstream_tls_dir,
                                        local_cell_ports=opts.local_cell_ports))
    if opts.region is not None:
        cp.tenant_files.digests.regions = frozenset({opts.region})
    if opts.audit_log is not None:
        cp.audit = ControlPlaneAudit.of(cp, opts.audit_log)
    replica = uuid.uuid4().hex  # in this replica's answers to its peers, who skip their own
    cp.peers = peers.Peers(opts.peers, replica=replica) if opts.peers else None
    platform_file = str(given.config_dir / "platform.yaml")
    # Until a config is served, a first one whose TLS disagrees with --tls-dir is refused like a bad file.
    cp.fixed_at_start = lambda config: tls_problems(config, opts.tls_dir, platform_file)
    first = cp.reload()
    if not first.ok:
        log.error("no valid config yet: Envoy gets nothing until the config is fixed; watching %s", given.location)
    ratelimit = RateLimit()
    if cp.config is not None:
        with _listening("the rate-limit service", "--ratelimit-port"):
            await ratelimit.start(cp, opts, platform_file)

    xds = XdsServer(store, opts.host, opts.xds_port, tls_dir=opts.tls_dir)
    with _listening("xDS", "--xds-port"):
        await xds.start()
    app = status_app(cp)
    app.router.add_get("/metrics", ratelimit.metrics)
    # The offboarding's steps only this process can do: delete counters, append to the audit chain.
    from xds_server.offboard import http as offboard_http

    offboard_http.add_routes(app, cp, ratelimit.backend)
    # Answered whether or not this replica asks others: a peer may.
    peers.add_routes(app, cp.moves, store, replica)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with _listening("the status server", "--status-port"):
        await web.TCPSite(runner, opts.host, opts.status_port).start()
    log.info("control plane up: xDS on %s:%d, status on http://%s:%d/status",
             opts.host, xds.bound_port, opts.host, opts.status_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(cp.watch(stop))
    sealer = (asyncio.create_task(seal_periodically(opts.audit_log, opts.audit_seal_after_s, stop))
              if opts.audit_log is not None and opts.audit_log.shipper is not None and opts.audit_seal_after_s > 0
              else None)
    # OPA (or the config source) may come up after us: keep trying, not only on the next file change. The
    # rate-limit service starts with the first config served, which says its port and backend.
    first_load = (asyncio.create_task(_first_load(cp, opts, ratelimit, platform_file, stop))
                  if cp.compiled is None else None)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        if sealer is not None:
            sealer.cancel()
        if first_load is not None:
            first_load.cancel()
        if source is not None:
            await source.close()
        await xds.stop(0.5)
        await ratelimit.stop()
        await runner.cleanup()
        if cp.validator is not None:
            cp.validator.close()  # its spare Envoy
        _ship_the_last_records(opts.audit_log)
        log.info("control plane stopped")


async def seal_periodically(audit: AuditLog, max_age_s: float, stop: asyncio.Event) -> None:
    """Seal the active audit file once its first record is `max_age_s` old, checked a few times per period:
    a control plane that changes little would otherwise keep its records unshipped until the size limit or
    its stop, and a node lost outright runs no stop."""
    tick = min(60.0, max(max_age_s / 4, 0.05))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)
        if stop.is_set():
            return
        try:
            # A rotation renames and hands the file to the shipper's thread: off the loop all the same,
            # since the log's lock may be held by a reload appending a 10,000-tenant record.
            sealed = await asyncio.to_thread(audit.seal_if_older, max_age_s)
        except (AuditError, OSError) as err:
            log.error("audit: cannot seal the active file for shipping: %s", err)
            continue
        if sealed is not None:
            log.info("audit: sealed %s (its first record %.0f s old) for shipping", sealed.name, max_age_s)


def _ship_the_last_records(audit: AuditLog | None, timeout_s: float = 20.0) -> None:
    """On a stop, where the audit trail is shipped: the active file's records too (in a cluster the state
    dir is an emptyDir, gone with the pod), within the pod's grace period."""
    if audit is None or audit.shipper is None:
        return
    audit.seal()
    flush = getattr(audit.shipper, "flush", None)
    left = flush(timeout_s) if flush is not None else []
    if left:
        log.error("audit files not shipped before stopping (they stay in %s): %s", audit.path.parent,
                  ", ".join(p.name for p in left))


class ListenError(Exception):
    """A port the control plane must listen on is not to be had (in use, or not ours to bind)."""


@contextlib.contextmanager
def _listening(what: str, flag: str) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        raise ListenError(f"{flag}: {what} cannot listen: {err.strerror or err}") from err


async def _first_load(cp: ControlPlane, opts: ServeOptions, ratelimit: RateLimit, platform_file: str,
                      stop: asyncio.Event) -> None:
    await retry_until_loaded(cp, stop)  # returns once a config is published (config and snapshots together)
    if stop.is_set():
        return
    try:
        with _listening("the rate-limit service", "--ratelimit-port"):
            await ratelimit.start(cp, opts, platform_file)
    except (ListenError, OSError) as err:
        # Envoy is told to ask a service that is not there: stop, as a start with this config would.
        log.error("stopping: %s", err)
        stop.set()


def tls_problems(config: PlatformConfig, tls_dir: Path | None, platform_file: str) -> list[Problem]:
    try:
        control_plane_tls.check(config, tls_dir)
    except control_plane_tls.TlsConfigError as err:
        return [Problem(platform_file, "gateway.upstream_tls", f"{err}; the flag is read at start: restart the "
                        "control plane with the other one to change it")]
    return []


# The rate-limit settings read once, when the service starts; each names the serve flag that overrides it.
_FIXED = (("enabled", None), ("host", "--ratelimit-port"), ("port", "--ratelimit-port"),
          ("backend", "--ratelimit-redis-url"), ("redis_url", "--ratelimit-redis-url"))


@dataclass
class RateLimit:
    """The rate-limit service beside xDS, once a config is served: its address and backend are read then,
    and a later config that changes them is refused (Envoy would dial a port nothing listens on, or count
    elsewhere); its limits follow every publish."""

    server: RateLimitServer | None = None
    started: bool = False

    async def start(self, cp: ControlPlane, opts: ServeOptions, platform_file: str) -> None:
        assert cp.config is not None
        settings = cp.config.platform.ratelimit
        overridden = {flag for flag, given in (("--ratelimit-port", opts.ratelimit_port is not None),
                                              ("--ratelimit-redis-url", bool(opts.ratelimit_redis_url))) if given}
        fixed = [name for name, flag in _FIXED if flag not in overridden]

        def agrees(config: PlatformConfig) -> list[Problem]:
            new = config.platform.ratelimit
            problems = tls_problems(config, opts.tls_dir, platform_file)
            for name in fixed:
                if getattr(new, name) != getattr(settings, name):
                    # Not the values of redis_url: they may hold a password.
                    was = "another URL" if name == "redis_url" else repr(getattr(settings, name)).lower()
                    problems.append(Problem(platform_file, f"ratelimit.{name}",
                                            f"the rate-limit service runs with {was}, read when the control "
                                            "plane started; restart the control plane to change it"))
            return problems

        cp.fixed_at_start = agrees
        self.started = True
        if not settings.enabled:
            return
        update: dict[str, object] = {}
        if opts.ratelimit_port is not None:
            update.update(host=opts.host, port=opts.ratelimit_port)
        if opts.ratelimit_redis_url:
            update.update(backend=RateLimitBackend.REDIS, redis_url=with_env_password(opts.ratelimit_redis_url))
        rls = RateLimitServer(settings.model_copy(update=update), reuse_port=opts.ratelimit_shared_port,
                              tls_dir=opts.tls_dir)
        if cp.compiled is not None:
            rls.publish(cp.compiled.ratelimits)
        cp.limits_sink = rls.publish
        await rls.start()
        self.server = rls

    def backend(self) -> Backend | None:
        return self.server.service.backend if self.server is not None else None

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if self.server is None:
            return web.json_response({"error": "no rate-limit service runs here (off in the config, or no "
                                               "config served yet)", "code": 404}, status=404)
        return await self.server.metrics_handler(request)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


def _validator() -> EnvoyValidator | None:
    try:
        return EnvoyValidator(find_envoy())
    except EnvoyError as err:
        log.warning("changes are published without Envoy's pre-validation: %s", err)
        return None
