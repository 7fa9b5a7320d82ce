"""Reload loop: every change flows config -> validate -> compile -> publish. A change that fails any
step is reported with every reason and the last good snapshots keep serving."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from xds_server.audit.log import redact_secrets
from xds_server.audit.trail import ControlPlaneAudit
from xds_server.cells import layout
from xds_server.cells.keys import FRONT, snapshot_key, split_key
from xds_server.cells.moves import Moves
from xds_server.cells.peers import Peers
from xds_server.cells.view import CellView
from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, EndpointDirectory
from xds_server.config import ConfigError, PlatformConfig, load_config
from xds_server.config.changes import TenantChanges
from xds_server.config.errors import Problem
from xds_server.config.loader import TenantFileCache
from xds_server.controlplane import repository
from xds_server.controlplane.admin_client import AdminClient
from xds_server.endpoints.source import EndpointSource
from xds_server.endpoints.static import StaticEndpoints
from xds_server.envoy.validate import EnvoyValidator
from xds_server.listing import capped
from xds_server.ratelimit.limits import LimitTable
from xds_server.snapshot import SCOPED_ROUTE
from xds_server.sources.config import ConfigSource, LocalSource, Revision, SourceError
from xds_server.xds.store import SnapshotStore

log = logging.getLogger("fairshare.controlplane")


@dataclass
class ReloadOutcome:
    ok: bool
    version: str | None
    error: str | None
    at: float
    # Which revision of the config source this was about (S3 version, git commit; where it came from, who
    # made it): what the audit log records of each applied or refused change.
    revision: Revision | None = None
    # Where an applied reload's time went (seconds): load (files, policy, placement), compile, validate
    # (Envoy's check of what changed), publish.
    seconds: dict[str, float] = field(default_factory=dict)
    # Whether the load read only the tenant files the watcher named (xds_server/config/incremental.py).
    incremental: bool = False
    # A refused config's problems, each with every tenant it names (`error` shows the first few): the
    # status's JSON keeps what `fairshare validate --json` would list.
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Refused:
    """Why a reload's build was refused: the text for people and logs, and a config's problems whole."""

    reason: str
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Built:
    """A reload's slow half done: the config, its snapshots, the endpoints they were compiled against, and how
    the config differs from the one loaded before it (an incremental load)."""

    config: PlatformConfig
    compiled: CompiledPlatform
    endpoints: EndpointDirectory
    changes: TenantChanges | None
    seconds: dict[str, float]


@dataclass
class ControlPlane:
    config_dir: Path
    endpoints_file: Path | None
    jwks: str
    store: SnapshotStore
    listen_address: str = "0.0.0.0"
    validator: EnvoyValidator | None = None
    compiler: Compiler = field(default_factory=Compiler)
    tenant_files: TenantFileCache = field(default_factory=TenantFileCache)
    config: PlatformConfig | None = None
    compiled: CompiledPlatform | None = None
    last: ReloadOutcome | None = None
    # Receives each published config's rate limits (the rate-limit service's publish).
    limits_sink: Callable[[LimitTable], None] | None = None
    # What a config must agree with that this process read when it started (the rate-limit service's
    # address and backend, mutual TLS to the control plane): its problems, none if it agrees. A config that
    # differs is refused, naming the field, rather than sent to Envoy half-applied.
    fixed_at_start: Callable[[PlatformConfig], list[Problem]] | None = None
    # The replicas (with their admin ports) the last published config was compiled against.
    endpoints: EndpointDirectory = field(default_factory=EndpointDirectory)
    # Every applied or refused change is recorded here (xds_server/audit); None: no audit trail.
    audit: ControlPlaneAudit | None = None
    # Where the replicas come from (xds_server/endpoints); None: the endpoints file above, if any.
    endpoint_source: EndpointSource | None = None
    # Where the config and policies come from (xds_server/sources/config); None: the local config_dir.
    config_source: ConfigSource | None = None
    # The revision of the change being applied or refused (then, of the last one): for the audit record.
    revision: Revision | None = None
    # The control plane's certificate (its --tls-dir): presented to the runtimes' admin ports (unloads).
    admin_tls_dir: Path | None = None
    # Tenants moving between cells, and where each region's front tier sends each tenant.
    moves: Moves = field(default_factory=Moves)
    # The other control-plane replicas, asked what their Envoys acknowledged before each step of a move
    # (xds_server/cells/peers.py); None: none known (the moves' fallbacks for unseen Envoys apply).
    peers: Peers | None = None
    # Reloads told which files changed read only those (the watcher's events); at least this often a reload
    # reads everything, in case an event was lost (an inotify queue overflow, a file changed while unwatched).
    full_reload_seconds: float = 300.0
    _full_at: float = field(default_factory=time.monotonic)
    _building: asyncio.Lock = field(default_factory=asyncio.Lock)
    # When the build in progress began (epoch seconds); None: none. A build that never ends (a file that
    # blocks its read) shows in the status, not behind "last reload ok".
    building_since: float | None = None

    def __post_init__(self) -> None:
        if self.config_source is None:
            self.config_source = LocalSource(self.config_dir)
        if self.endpoint_source is None and self.endpoints_file is not None:
            self.endpoint_source = StaticEndpoints(self.endpoints_file)

    def _source(self) -> ConfigSource:
        assert self.config_source is not None  # set in __post_init__
        return self.config_source

    def reload(self) -> ReloadOutcome:
        """Load, validate, compile and publish. Never raises for bad input: the outcome says why."""
        return self._apply(self._build())

    async def reload_off_loop(self) -> ReloadOutcome:
        """reload() with its slow half on a thread: the loop keeps answering probes and xDS meanwhile."""
        return self._apply(await asyncio.to_thread(self._build))

    def _build(self, changed: frozenset[str] | None = None) -> Built | Refused:
        """The slow half of a reload, safe off the event loop: load, compile and have Envoy validate what
        changed. Returns the config with its snapshots, or the reason it is rejected. `changed`: the paths
        that changed since the last reload, where the source knows them."""
        self.building_since = time.time()
        try:
            return self._build_timed(changed)
        finally:
            self.building_since = None

    def _build_timed(self, changed: frozenset[str] | None) -> Built | Refused:
        started = time.perf_counter()
        seconds: dict[str, float] = {}
        try:
            with _gc_paused() as sweep:
                given = self._source()
                revision = given.checkout()
                config = load_config(given.config_dir, self.tenant_files, policy_dir=given.policy_dir,
                                     changed=changed)
                seconds["load"] = time.perf_counter() - started
                fixed = self.fixed_at_start(config) if self.fixed_at_start is not None else []
                if fixed:
                    raise ConfigError(fixed)
                last = self.tenant_files.last
                changes = last.changes if last is not None and last.config is config else None
                sweep.collect = changes is None
                source = self.endpoint_source
                endpoints = source.for_reload() if source is not None else EndpointDirectory()
                views = self._cell_views(config)
                compiled = self.compiler.compile(CompileInputs(config, endpoints, self.jwks, self.listen_address,
                                                               cells=views, changes=changes,
                                                               emptied=self._emptied(config, views)))
            seconds["compile"] = time.perf_counter() - started - seconds["load"]
            moved = given.verify(revision)
            if moved is not None:
                return Refused(moved)
        except ConfigError as err:
            return Refused(err.render(), tuple(err.problems))
        except SourceError as err:  # the revision could not be fetched, or is corrupt
            return Refused(str(err))
        except Exception as err:  # a compiler bug must not take the serving config down with it
            log.exception("compile failed")
            return Refused(f"internal compiler error: {err!r}")
        validated = time.perf_counter()
        if self.validator is not None and config.platform.gateway.validate_before_publish:
            validator, published = self.validator, self.compiled

            def check(region: str) -> str | None:
                previous = published.snapshots.get(region) if published else None
                return validator.check(previous, compiled.snapshots[region])

            # One Envoy per changed snapshot (region, or cell), a few side by side: each is a separate process.
            # An edit changes one: it is checked on this thread, without starting a pool's.
            regions = [r for r in sorted(compiled.snapshots) if _changed_since(published, compiled, r)]
            with ThreadPoolExecutor(max_workers=max(1, min(len(regions), 4))) as pool:
                reasons = map(check, regions) if len(regions) == 1 else pool.map(check, regions)
                for region, reason in zip(regions, reasons, strict=True):
                    if reason is not None:
                        return Refused(f"Envoy would reject the new config for region {region}: {reason}")
        seconds["validate"] = time.perf_counter() - validated
        return Built(config, compiled, endpoints, changes, seconds)

    def _apply(self, built: Built | Refused) -> ReloadOutcome:
        """Publish on the event loop's thread: the store wakes streams with asyncio primitives."""
        if isinstance(built, Refused):
            return self._rejected(built)
        publishing = time.perf_counter()
        config, compiled, endpoints = built.config, built.compiled, built.endpoints
        compiled, endpoints = self._over_newest_endpoints(config, compiled, endpoints)
        # What differs from the serving config, where the load knows (it is the config this one was loaded
        # after; not after a refused change, which the serving one predates).
        changed = built.changes.tenants if built.changes is not None and built.changes.since is self.config else None
        if built.changes is None:
            self._full_at = time.monotonic()
        gone = repository.removed(self.config, config, changed)
        before, previous = self.config, self.compiled.version if self.compiled else None
        self.revision = self._source().settle(True)
        # Limits first: a tenant's new routes never reach Envoy before the limits they name.
        if self.limits_sink is not None:
            self.limits_sink(compiled.ratelimits)
        for region, snapshot in compiled.snapshots.items():
            self.store.set_snapshot(region, snapshot)
        self.config, self.compiled, self.endpoints = config, compiled, endpoints
        # Removed own models already answer 404 at the gateway; their bytes are freed on the replicas
        # that held them, best effort, off the publish path.
        repository.unload_in_background(gone, endpoints, AdminClient.for_config(config, self.admin_tls_dir))
        if self.audit is not None:
            self.audit.applied(before, config, compiled.version, previous, changed)
        log.info("published config version %s (%d tenants; %d snapshots: %s)", compiled.version, len(config.tenants),
                 len(compiled.snapshots), capped(f"{r}={s.version}" for r, s in compiled.snapshots.items()))
        seconds = {**built.seconds, "publish": time.perf_counter() - publishing}
        self.last = ReloadOutcome(ok=True, version=compiled.version, error=None, at=time.time(),
                                  revision=self.revision, seconds=seconds, incremental=built.changes is not None)
        return self.last

    def _rejected(self, refused: Refused) -> ReloadOutcome:
        # A reason quotes the offending input back (a field name, a value), and people paste credentials into
        # config files: nothing that looks like a token or a key reaches the log or the status page.
        reason = redact_secrets(refused.reason)
        problems = tuple(dataclasses.replace(p, field=redact_secrets(p.field), message=redact_secrets(p.message))
                         for p in refused.problems)
        serving = self.compiled.version if self.compiled else "none"
        self.revision = self._source().settle(False)
        log.error("config change rejected; still serving version %s\n%s", serving, reason)
        if self.audit is not None:
            self.audit.refused(reason, serving if self.compiled else None)
        self.last = ReloadOutcome(ok=False, version=serving if self.compiled else None, error=reason, at=time.time(),
                                  revision=self.revision, problems=problems)
        return self.last

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Reload whenever the config source may have a new revision (a local folder's or a git checkout's
        changes through inotify, an S3 object's new version by polling)."""
        followers = [asyncio.create_task(self._follow_endpoints()), asyncio.create_task(self._follow_moves())]
        try:
            async for paths in self._source().changes([], stop):
                if time.monotonic() - self._full_at > self.full_reload_seconds:
                    paths = None
                async with self._building:
                    self._apply(await asyncio.to_thread(self._build, paths))
        finally:
            for follower in followers:
                follower.cancel()

    def _over_newest_endpoints(self, config: PlatformConfig, compiled: CompiledPlatform,
                               endpoints: EndpointDirectory) -> tuple[CompiledPlatform, EndpointDirectory]:
        """Pods changed while this compiled: publish it over the newest endpoints, never older ones."""
        if self.endpoint_source is not None and (latest := self.endpoint_source.current()) is not endpoints:
            return Compiler.with_endpoints(compiled, config, latest), latest
        return compiled, endpoints

    def _cell_views(self, config: PlatformConfig) -> dict[str, CellView]:
        self.moves.drain_seconds = config.platform.cells.drain_seconds
        self.moves.replicated = (config.platform.controlplane.replicas or 1) > 1
        return self.moves.views(config, first=self.compiled is None)

    def _emptied(self, config: PlatformConfig, views: Mapping[str, CellView]) -> dict[str, list[str]]:
        """Per region, the cells out of its layout that no tenant is in any more while the snapshot published
        for them still holds some (compiler/compile.py builds them once more, empty)."""
        out: dict[str, list[str]] = {}
        for key in self.store.regions():
            region, cell = split_key(key)
            view = views.get(region)
            if cell is None or cell == FRONT or view is None or cell in view.members \
                    or cell in layout.cells(config.regions[region]):
                continue
            published = self.store.get(key)
            if published is not None and published.of_type(SCOPED_ROUTE):
                out.setdefault(region, []).append(cell)
        return out

    async def _follow_moves(self, interval: float = 0.1) -> None:
        """Tenants moving between cells (xds_server/cells/moves.py): take each step once the Envoys have
        acknowledged the last, and publish the cells' and the front's new snapshots."""
        while True:
            await asyncio.sleep(interval)
            config = self.config
            if config is None or not config.cells or not self.moves.pending():
                continue
            word = None
            if self.peers is not None:
                word = await self.peers.word(*self.moves.questions())
            if self.moves.advance(self.store, word):
                async with self._building:
                    if self.config is config:  # a reload in between has already compiled the new views
                        await self._recompose(config)
            self.moves.published(self.store)

    async def _recompose(self, config: PlatformConfig) -> None:
        """Publish the serving config with the cells' new membership: the same tenants' resources (memoised),
        so nothing new to validate; only the snapshots whose membership changed get a new version."""
        # The same config as the last compile's: no tenant to compare.
        views = self._cell_views(config)
        inputs = CompileInputs(config, self.endpoints, self.jwks, self.listen_address, cells=views,
                               changes=TenantChanges(config, frozenset()), emptied=self._emptied(config, views))
        compiled = await asyncio.to_thread(self.compiler.compile, inputs)
        compiled, endpoints = self._over_newest_endpoints(config, compiled, inputs.endpoints)
        for key, snapshot in compiled.snapshots.items():
            self.store.set_snapshot(key, snapshot)
        self.compiled, self.endpoints = compiled, endpoints
        log.info("cells: published moves (%d tenants still moving); config version %s", self.moves.pending(),
                 compiled.version)

    async def _follow_endpoints(self) -> None:
        source = self.endpoint_source
        if source is None:
            return
        await source.start()  # at once when already started (serve starts it before the first reload)
        async for directory in source.changes():
            self.apply_endpoints(directory)

    def apply_endpoints(self, endpoints: EndpointDirectory) -> None:
        """A pod came, went or began draining: republish the endpoint sets alone over the serving config
        (`Compiler.with_endpoints`, equal to a full compile), not a reload of the tenants."""
        if endpoints is self.endpoints:
            return  # already published (a reload compiled against it)
        if self.config is None or self.compiled is None:
            self.endpoints = endpoints  # no config yet: the first reload compiles against the source
            return
        compiled = Compiler.with_endpoints(self.compiled, self.config, endpoints)
        for region, snapshot in compiled.snapshots.items():
            self.store.set_snapshot(region, snapshot)
        self.compiled, self.endpoints = compiled, endpoints
        log.info("published endpoints: %d replicas (%d draining); config version %s",
                 sum(len(eps) for eps in endpoints.by_pool.values()),
                 sum(e.draining for eps in endpoints.by_pool.values() for e in eps), compiled.version)

    def status(self) -> dict[str, object]:
        return {
            "config_version": self.compiled.version if self.compiled else None,
            "tenants": len(self.config.tenants) if self.config else 0,
            # Marked `offboard: true` and served by no gateway (what `fairshare tenant offboard` waits for).
            "offboarded": sorted(self.config.offboarded) if self.config else [],
            # A build in progress, since when (epoch seconds); None: none.
            "reloading_since": self.building_since,
            "last_reload": None if self.last is None else {
                "ok": self.last.ok, "version": self.last.version, "error": self.last.error, "at": self.last.at,
                # Read only the tenant files that changed (else everything).
                "incremental": self.last.incremental,
                "seconds": {k: round(v, 4) for k, v in self.last.seconds.items()},
                "revision": self.last.revision.to_json() if self.last.revision else None,
                **({"problems": [p.to_json() for p in self.last.problems]} if self.last.problems else {}),
            },
            # The audit trail's head (seq, digest) and any record lost; None: no trail kept.
            "audit": None if self.audit is None else self.audit.status(),
            # Where the config comes from, the revision serving and the last refused one.
            "config_source": self._source().status(),
            # Where the replicas come from and how following it goes (Kubernetes: lists, watches, 410s,
            # errors, stalls, the resourceVersion followed); None: no endpoint source.
            "endpoint_source": None if self.endpoint_source is None else self.endpoint_source.status(),
            "xds": self.store.status(),
            # Regions split into cells: each cell's (and each front tier's) snapshot, tenants and moves.
            "cells": self._cells_status(),
            # The other replicas asked about moves, and how each last answered; None: no peers given.
            "peers": None if self.peers is None else self.peers.status(),
            # Every runtime replica with its admin address (the repository extension), for operators'
            # tools (`fairshare models`); never routed to by Envoy.
            "replicas": [
                {"region": region, "pool": pool, "name": e.name, "address": f"{e.host}:{e.port}",
                 "admin": e.admin_url}
                for (region, pool), eps in sorted(self.endpoints.by_pool.items()) for e in eps
            ],
        }


    def _cells_status(self) -> list[dict[str, object]]:
        if self.compiled is None or self.config is None:
            return []
        moving = self.moves.status()
        out: list[dict[str, object]] = []
        for key, snap in sorted(self.compiled.snapshots.items()):
            # A region without cells (cell None) is listed too: its one gateway fleet holds its tenants.
            region, cell = split_key(key)
            counts = moving.get(region, {}).get(cell, {}) if cell is not None else {}
            kept = cell is None or cell == FRONT or region not in self.config.regions \
                or cell in layout.cells(self.config.regions[region])
            out.append({
                "region": region, "cell": cell, "key": key, "version": snap.version,
                # Taken out of the layout, its tenants still moving out (compiler/compile.py keeps it meanwhile).
                **({} if kept else {"removed": True}),
                # The front holds no tenant's resources: its count is the tenants it routes.
                "tenants": len(snap.resources.get(SCOPED_ROUTE, {})) if cell != FRONT
                else self.moves.routed(region),
                "moving_in": counts.get("moving_in", 0), "moving_out": counts.get("moving_out", 0),
            })
        # One the compiler could not keep (a dedicated cell on one machine): its last snapshot serves them.
        for region, cells in sorted(moving.items()):
            for cell, counts in sorted(cells.items()):
                key = snapshot_key(region, cell)
                if key in self.compiled.snapshots:
                    continue
                published = self.store.published(key)
                out.append({"region": region, "cell": cell, "key": key, "removed": True,
                            "version": published.snapshot.version if published is not None else None,
                            "tenants": counts.get("moving_out", 0),
                            "moving_in": counts.get("moving_in", 0), "moving_out": counts.get("moving_out", 0)})
        return out


@dataclass
class _Sweep:
    """Whether the end of a build collects what it allocated before freezing it (`_gc_paused`)."""

    collect: bool = True


@contextlib.contextmanager
def _gc_paused() -> Iterator[_Sweep]:
    """A build allocates hundreds of thousands of long-lived objects (10,000 tenants); CPython's cycle
    collector would rescan them again and again (at 10,000 tenants it doubled load time). Everything
    here is freed by reference counting; cycles wait for the collection at the end.

    At the end, what the build left behind is collected (its cycles, if any: the cost is the young
    collection that re-enabling would trigger anyway) and every survivor is frozen: the config and
    snapshots just built live until a later change replaces them, and are then freed by reference
    counting like any object. Without the freeze, CPython's full collections rescan every object of a
    10,000-tenant config: 0.4-1 s holding the GIL, during which the event loop and every xDS stream
    stop; the first one after start-up came due during the next large change (onboarding 1,000 own
    models: 0.43 s of its 1.6 s, before its snapshot was even published). What freezing gives up is
    collecting a reference cycle among frozen objects; the config and snapshots hold none.

    A build that allocated more than `_COLLECT_AT_MOST` objects (a full load of a few thousand tenants or
    more) is frozen without that collection: it would traverse every one of them (0.34 s at 10,000 tenants,
    3.3 s at 100,000, holding the GIL, so the event loop and every xDS stream stop meanwhile) to find
    nothing. Measured: a full load leaves no reference cycle at all, except the first one in a process
    (about 1,000 objects of classes and functions created by its imports), which is then kept. So is an
    incremental build (the build sets `sweep.collect` false): it allocates a few dozen objects, but among
    them the new config's dicts of every tenant, which the collection would traverse (8 ms an edit at
    100,000 tenants) to find nothing; tests/controlplane/test_reload_garbage.py checks both."""
    was_enabled = gc.isenabled()
    gc.disable()
    sweep = _Sweep()
    try:
        yield sweep
    finally:
        # The young generations only: they hold what the build allocated (the collector was off). A full
        # collection would also rescan whatever else became long-lived since the last freeze (another
        # config loaded beside the control plane's: 140 ms on each edit among 10,000 tenants).
        if sweep.collect and gc.get_count()[0] <= _COLLECT_AT_MOST:
            gc.collect(1)
        gc.freeze()
        if was_enabled:
            gc.enable()


# About what an edit of a few hundred tenants allocates; a full load of 10,000 allocates 590,000.
_COLLECT_AT_MOST = 200_000


def _changed_since(published: CompiledPlatform | None, compiled: CompiledPlatform, region: str) -> bool:
    """Whether `region`'s snapshot differs from the serving one (versions are content hashes)."""
    previous = published.snapshots.get(region) if published is not None else None
    return previous is None or previous.version != compiled.snapshots[region].version
