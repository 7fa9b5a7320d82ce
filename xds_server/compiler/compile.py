"""Compile the validated config into one immutable snapshot per region.

Tenants compile independently and are memoised on their own spec, so an edit to one tenant among
thousands re-does only that tenant's resources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.core.v3.base_pb2 import TransportSocket

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.cells import layout
from xds_server.cells.keys import FRONT, snapshot_key, split_key
from xds_server.cells.view import CellView, settled_views
from xds_server.compiler import (
    clusters,
    failover,
    front,
    listener,
    naming,
    own,
    parallel,
    ratelimits,
    routes,
    shaping,
    upstream_tls,
)
from xds_server.compiler.endpoint_sets import endpoint_resources
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.config.changes import TenantChanges
from xds_server.config.model import PlatformConfig, RateLimitSettings, ResolvedTenant, is_shared_cell
from xds_server.layered import Layered
from xds_server.ratelimit.limits import LimitTable
from xds_server.snapshot import ENDPOINT, Resource, Snapshot
from xds_server.workers import worker_count


@dataclass(frozen=True)
class CompileInputs:
    config: PlatformConfig
    endpoints: EndpointDirectory
    jwks: str
    listen_address: str = "0.0.0.0"
    # Regions split into cells: which tenants each cell's snapshot holds and where the front sends each
    # (xds_server/cells/moves.py, while tenants move); None: every tenant in its assigned cell.
    cells: Mapping[str, CellView] | None = None
    # How `config` differs from the config before (an incremental load): where that is the config this
    # compiler compiled last, only those tenants are looked at again. None: every tenant is compared.
    changes: TenantChanges | None = None
    # Per region, cells taken out of the layout whose last tenants have moved out while their gateways'
    # snapshot still holds some (the control plane's published one): compiled once more, with nobody in them.
    emptied: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledPlatform:
    version: str
    snapshots: MappingProxyType[str, Snapshot]
    # The rate-limit service's limits, published together with the snapshots.
    ratelimits: LimitTable = field(default_factory=LimitTable)


@dataclass(frozen=True)
class _KeptSnapshot:
    head: tuple[object, ...]  # its listener and shared resources (names and versions) and the shared inputs
    members: frozenset[str]
    snapshot: Snapshot
    # Its tenants' memo entries, by tenant: a rebuild takes an unchanged member's from here, a lookup in a
    # table of its own cell's size rather than in the fleet's (100,000 entries: an edit's cell rebuild spent
    # a third more time on cache misses than at 10,000).
    tenants: dict[str, tuple[tuple[str, str, str], tuple[Resource, ...]]]


@dataclass
class Compiler:
    """Holds the per-tenant memo between compiles; otherwise a pure function of its inputs."""

    _memo: dict[tuple[str, str, str], tuple[Resource, ...]] = field(default_factory=dict)
    # A tenant's memo key, kept while the config hands back the same ResolvedTenant object (the policy
    # layer reuses it for an unchanged tenant): serialising 10,000 tenants on every edit costs 0.1 s.
    _keys: dict[str, tuple[ResolvedTenant, str]] = field(default_factory=dict)
    # Where Envoy reaches the rate-limit service when a launcher chose it (a free port), not the config.
    ratelimit_address: tuple[str, int] | None = None
    # Where the gateways find their upstream-TLS certificates when a launcher chose it (its state dir).
    upstream_tls_dir: str | None = None
    # Every cell of a region on one machine (`fairshare run`): cell k listens on layout.local_port(region, k).
    local_cell_ports: bool = False
    # The front tier's tenant -> cell table per region, kept and patched as tenants come, go or move.
    _front_memo: dict[str, front.FrontTable] = field(default_factory=dict)
    # Each region's front cell clusters and endpoint sets, by its cells and the endpoints they were built over.
    _front_cells: dict[str, tuple[tuple[object, ...], list[Resource]]] = field(default_factory=dict)
    # Each snapshot, kept while what it is built from is unchanged (its listener and shared resources, its
    # tenants and their memo keys): an edit among 100,000 tenants in 40 cells rebuilds one cell's snapshot,
    # and the others are published as the same objects, which the store does not push again.
    _snapshot_memo: dict[str, _KeptSnapshot] = field(default_factory=dict)
    # Each tenant's memo key at the last compile.
    _specs: Mapping[str, str] = field(default_factory=dict)
    # The last rate-limit table and what every tenant's limits read besides the tenant.
    _limits: tuple[object, LimitTable] | None = None
    # Each gateway listener by what it is built from.
    _listeners: dict[tuple[object, ...], Resource] = field(default_factory=dict)
    # The config compiled last, which an incremental load's `changes` may be relative to.
    _compiled: PlatformConfig | None = None
    # Per region without cells, the tenants served there and the config they were found in.
    _region_members: dict[str, tuple[PlatformConfig, frozenset[str]]] = field(default_factory=dict)

    def _key(self, tid: str, tenant: ResolvedTenant) -> str:
        hit = self._keys.get(tid)
        if hit is None or hit[0] is not tenant:
            hit = self._keys[tid] = (tenant, tenant.model_dump_json())
        return hit[1]

    def compile(self, inputs: CompileInputs) -> CompiledPlatform:
        cfg = inputs.config
        shared_key = _shared_digest(cfg)
        # Tenants' resources the snapshots rebuilt here hold (kept snapshots' are in the memo already).
        fresh: dict[tuple[str, str, str], tuple[Resource, ...]] = {}
        snapshots: dict[str, Snapshot] = {}
        rl = self._ratelimit_settings(cfg)
        tls = self._upstream_tls(cfg)
        before = self._specs
        changes = inputs.changes
        incremental = changes is not None and changes.since is self._compiled
        if changes is not None and incremental:
            # An incremental load: only these tenants can have a new memo key. Layered over the last compile's
            # keys: a copy of 100,000 cost an edit about 5 ms, copied and then traversed by the collector.
            updates: dict[str, str | None] = {}
            for tid in changes.tenants:
                if tid in cfg.tenants:
                    updates[tid] = self._key(tid, cfg.tenants[tid])
                else:
                    updates[tid] = None
                    self._keys.pop(tid, None)
            specs: Mapping[str, str] = Layered.over(before, updates)
            changed = {tid for tid in changes.tenants if before.get(tid) != specs.get(tid)}
            gone: set[str] | None = {tid for tid in changes.tenants if tid not in cfg.tenants}
            shaping.carry(cfg, changes)
        else:
            # Memo keys, once per compile: the spec with the policy's decisions, so a policy edit recompiles.
            specs = {tid: self._key(tid, t) for tid, t in cfg.tenants.items()}
            if self._keys.keys() != specs.keys():  # tenants left: forget them (a copy each time: 0.1 s at 100,000)
                self._keys = {tid: self._keys[tid] for tid in specs}
            # Tenants whose memo key differs from the last compile's (usually the same string object, compared
            # by identity first): the only ones whose snapshots need building again.
            changed = {tid for tid, spec in specs.items() if before.get(tid) != spec}
            gone = None
        views = inputs.cells if inputs.cells is not None else settled_views(cfg)
        # Thousands of tenants to compile (a first load, a policy or catalog change): in worker processes.
        precompiled = parallel.compile_tenants(_compile_tenant, cfg, tls, self._pending(
            cfg, specs, shared_key, changed if incremental else None, views, changes))
        snapshot_memo: dict[str, _KeptSnapshot] = {}
        listener_inputs = (cfg.platform.auth.model_dump_json(), rl.model_dump_json() if rl is not None else None)
        used_listeners: dict[tuple[object, ...], Resource] = {}
        for region_id, region in cfg.regions.items():
            shared: list[Resource] = []
            if rl is not None:
                shared.append(Resource.pack(naming.RATELIMIT_CLUSTER,
                                            ratelimits.service_cluster(rl, self._control_plane_tls(cfg))))
            shared.extend(endpoint_resources(cfg, inputs.endpoints, region_id))
            # Tenants' own models: a few hashed clusters per pool and failover chain, however many
            # models and tenants.
            shared.extend(Resource.pack(c.name, c) for c in own.own_clusters(cfg, region_id, tls))

            def tenants_of(members: Iterable[str], kept: _KeptSnapshot | None,
                           used: dict[str, tuple[tuple[str, str, str], tuple[Resource, ...]]],
                           region_id: str = region_id) -> list[Resource]:
                # A member the snapshot held, not changed since, under the same shared inputs: its memo key is
                # the one it had (a snapshot is rebuilt in every compile that changes one of its members).
                reusable = kept.tenants if kept is not None and kept.head[1] == shared_key else {}
                out: list[Resource] = []
                for tid in members:
                    hit = reusable.get(tid) if tid not in changed else None
                    if hit is None:
                        key = (region_id, specs[tid], shared_key)
                        compiled = fresh.get(key) or self._memo.get(key) or precompiled.get((region_id, tid))
                        if compiled is None:
                            compiled = tuple(_compile_tenant(cfg, cfg.tenants[tid], region_id, tls))
                        hit = (key, compiled)
                    used[tid] = hit
                    out.extend(hit[1])
                return out

            listeners: dict[tuple[int, bool], Resource] = {}

            def gateway(port: int, front: bool = False, region_id: str = region_id,
                        listeners: dict[tuple[int, bool], Resource] = listeners) -> Resource:
                """Built once per port (and tier): in a cluster every cell of the region listens on the same one;
                on one machine each cell has its own, and 40 cells' listeners cost an edit 50 ms: kept while
                their inputs are the same, the front tier's too."""
                if (port, front) not in listeners:
                    key = (inputs.listen_address, port, listener_inputs, inputs.jwks, region_id, front)
                    kept = self._listeners.get(key)
                    if kept is None:
                        kept = Resource.pack(naming.LISTENER, listener.gateway_listener(
                            inputs.listen_address, port, cfg.platform.auth, inputs.jwks, region_id,
                            None if front else rl, front=front))
                    listeners[port, front] = used_listeners[key] = kept
                return listeners[port, front]

            def build(key: str, head: list[Resource], members: frozenset[str]) -> None:
                head_ident = (tuple((r.name, r.version) for r in head), shared_key)
                kept = self._snapshot_memo.get(key)
                same_members = kept is not None and (kept.members is members or kept.members == members)
                if (kept is not None and kept.head == head_ident and same_members
                        and members.isdisjoint(changed)):
                    snapshot_memo[key] = kept
                else:
                    used: dict[str, tuple[tuple[str, str, str], tuple[Resource, ...]]] = {}
                    resources = [*head, *tenants_of(sorted(members), kept, used)]
                    snapshot_memo[key] = _KeptSnapshot(head_ident, members, Snapshot.build(_version(resources),
                                                                                            resources), used)
                    fresh.update(used.values())
                snapshots[key] = snapshot_memo[key].snapshot

            view = views.get(region_id)
            if view is None:  # one gateway fleet for the region: every tenant in one snapshot
                # Its members are the tenants served here: an edit to a tenant of another region keeps it.
                build(region_id, [gateway(region.gateway_port), *shared], self._served_in(cfg, region_id, changes))
                continue
            for index, cell in enumerate(layout.cells(region)):
                port = layout.local_port(region, index) if self.local_cell_ports else region.gateway_port
                build(snapshot_key(region_id, cell), [gateway(port), *shared], view.members.get(cell, frozenset()))
            # A cell taken out of the layout while its tenants move out still serves them: kept current (their
            # edits, the pools' pods) until it is empty. On one machine only a shared cell's port is known.
            # Once empty, it is built once more with nobody in it (`emptied`): its gateways, if still running,
            # then hold no tenant whose routes they would otherwise keep serving.
            reached = front.front_cells(region, view.members)
            emptied = [c for c in inputs.emptied.get(region_id, ()) if c not in reached]
            for cell in [*reached[len(layout.cells(region)):], *emptied]:
                port = region.gateway_port
                if self.local_cell_ports:
                    if not is_shared_cell(cell):
                        continue  # its last snapshot stays as it was
                    port = layout.local_port(region, int(cell[1:]))
                build(snapshot_key(region_id, cell), [gateway(port), *shared], view.members.get(cell, frozenset()))
            build(snapshot_key(region_id, FRONT),
                  [gateway(region.gateway_port, front=True), *self._front(cfg, inputs, region_id, view, reached)],
                  frozenset())
        # Keep only what this config used: the memo never outgrows the current tenant set. Only now, once
        # every snapshot is built: a compile that fails half-way must not leave the next one comparing
        # against memo keys whose snapshots were never built.
        self._memo = _memo_after(self._memo, fresh, snapshot_memo)
        self._snapshot_memo = snapshot_memo
        self._specs = specs
        self._compiled = cfg
        self._listeners = used_listeners
        limits = self._limit_table(cfg, changed, gone) if rl is not None else self._no_limits()
        return CompiledPlatform(version=_overall(snapshots), snapshots=MappingProxyType(snapshots), ratelimits=limits)

    def _pending(self, cfg: PlatformConfig, specs: Mapping[str, str], shared_key: str, changed: set[str] | None,
                 views: Mapping[str, CellView], changes: TenantChanges | None) -> list[tuple[str, str]]:
        """Each (region, tenant) whose resources are not in the memo; of the `changed` tenants only, after an
        incremental load (the others' memo keys are the last compile's). In the order the snapshots are
        built: their resources are then allocated together, and a later edit that walks one cell's
        snapshot touches a quarter of the memory (an edit took 40% longer after a load in file order)."""
        if changed is not None and worker_count(len(changed), cfg.platform.controlplane.workers) < 2:
            return []  # an edit or a few: not worth a worker, nor a look at every tenant
        out: list[tuple[str, str]] = []
        for region_id, region in cfg.regions.items():
            view = views.get(region_id)
            groups = ([view.members.get(cell, frozenset()) for cell in layout.cells(region)] if view is not None
                      else [self._served_in(cfg, region_id, changes)])
            for members in groups:
                out.extend((region_id, tid) for tid in sorted(members) if (changed is None or tid in changed)
                           and (region_id, specs[tid], shared_key) not in self._memo)
        return out

    def _no_limits(self) -> LimitTable:
        self._limits = None  # the next table is built whole: `changed` will be relative to this compile
        return LimitTable()

    def _served_in(self, cfg: PlatformConfig, region_id: str, changes: TenantChanges | None) -> frozenset[str]:
        """The tenants served in a region without cells; after an incremental load, the last compile's set
        with the changed tenants put in or out (the same object when none came or went)."""
        kept = self._region_members.get(region_id)
        if kept is not None and kept[0] is cfg:
            return kept[1]
        if kept is not None and changes is not None and changes.since is kept[0]:
            members = kept[1]
            came = {tid for tid in changes.tenants if tid in cfg.tenants and region_id in cfg.tenants[tid].routes}
            went = (changes.tenants - came) & members
            if went or not came <= members:
                members = (members - went) | came
        else:
            members = frozenset(tid for tid, t in cfg.tenants.items() if region_id in t.routes)
        self._region_members[region_id] = (cfg, members)
        return members

    def _limit_table(self, cfg: PlatformConfig, changed: set[str], gone: set[str] | None) -> LimitTable:
        table = ratelimits.limit_table(cfg, self._limits, changed, gone)
        self._limits = (ratelimits.table_inputs(cfg), table)
        return table

    @staticmethod
    def with_endpoints(compiled: CompiledPlatform, cfg: PlatformConfig,
                       endpoints: EndpointDirectory) -> CompiledPlatform:
        """The same compiled config over new endpoints: only the endpoint sets are rebuilt, every other
        resource is reused as is, so a pod change costs the endpoint sets, not the tenants. The result is
        identical to a full compile over the same inputs (versions are content digests)."""
        snapshots: dict[str, Snapshot] = {}
        for key, snap in compiled.snapshots.items():
            region_id, cell = split_key(key)
            resources = [r for t, by_name in snap.resources.items() if t != ENDPOINT for r in by_name.values()]
            resources.extend(front.cell_endpoint_sets(region_id, front.cells_reached(snap), endpoints) if cell == FRONT
                             else endpoint_resources(cfg, endpoints, region_id))
            snapshots[key] = Snapshot.build(_version(resources), resources)
        return CompiledPlatform(version=_overall(snapshots), snapshots=MappingProxyType(snapshots),
                                ratelimits=compiled.ratelimits)

    def _front(self, cfg: PlatformConfig, inputs: CompileInputs, region_id: str, view: CellView,
               reached: list[str]) -> list[Resource]:
        """The front tier's snapshot but its listener: the tenant -> cell table (patched where tenants came,
        went or moved: building 100,000 entries takes about 0.5 s), a cluster and an endpoint set per cell it
        reaches (`reached`: front.front_cells)."""
        timeout = cfg.platform.gateway.request_timeout_seconds
        memo = self._front_memo.get(region_id)
        if memo is None or memo.timeout_seconds != timeout:
            memo = self._front_memo[region_id] = front.FrontTable.build(view.front, timeout)
        table = memo.routes(view.front)
        # A cluster and an endpoint set per cell, kept while the region's cells and the endpoints are the same
        # (an edit among 100,000 tenants in 40 cells rebuilt all 80: 1-2 ms).
        key = (tuple(reached), inputs.endpoints)
        kept = self._front_cells.get(region_id)
        if kept is None or kept[0] != key:
            kept = self._front_cells[region_id] = (key, [
                *(Resource.pack(c.name, c) for c in (front.cell_cluster(cell, region_id) for cell in key[0])),
                *front.cell_endpoint_sets(region_id, key[0], inputs.endpoints),
            ])
        return [table, *kept[1]]

    def _upstream_tls(self, cfg: PlatformConfig) -> TransportSocket | None:
        settings = cfg.platform.gateway.upstream_tls
        if not settings.enabled:
            return None
        return upstream_tls.transport_socket(self.upstream_tls_dir or settings.sds_dir)

    def _control_plane_tls(self, cfg: PlatformConfig) -> TransportSocket | None:
        """The rate-limit cluster's socket: the gateway's SDS directory (the same on every replica's
        snapshot), the control plane's name checked."""
        settings = cfg.platform.gateway.upstream_tls
        if not settings.to_control_plane:
            return None
        return upstream_tls.control_plane_socket(self.upstream_tls_dir or settings.sds_dir)

    def _ratelimit_settings(self, cfg: PlatformConfig) -> RateLimitSettings | None:
        settings = cfg.platform.ratelimit
        if not settings.enabled:
            return None
        if self.ratelimit_address is not None:
            host, port = self.ratelimit_address
            settings = settings.model_copy(update={"host": host, "port": port})
        return settings


def _compile_tenant(cfg: PlatformConfig, tenant: ResolvedTenant, region: str,
                    tls: TransportSocket | None = None) -> list[Resource]:
    spec = tenant.spec
    allowed_here = tenant.routes.get(region)
    if allowed_here is None:
        # Nothing of the tenant exists here (policy/residency): a region's gateways carry only the
        # tenants they may serve, and a request from any other tenant matches no scope (403).
        return []
    out = [Resource.pack(naming.tenant_scope(spec.id), routes.tenant_scope(spec.id))]
    served: list[routes.ModelRoute] = []
    for model_name, grant in sorted(spec.models.items()):
        routable = set(allowed_here.get(model_name, ()))
        # policy/residency denies a split with traffic here, so only weight-0 versions are ever skipped
        versions = [(v, w) for v, w in sorted(grant.split.items()) if v in routable]
        if not versions:
            served.append(routes.ModelRoute(model=model_name, targets=()))
            continue
        # One cluster for the model whatever its split (docs/design/0001): the circuit breakers cap the
        # tenant's concurrency on the model. It reads its versions' pool (or, where they run on several,
        # picks each version's subset of the model's replicas); with failover regions the policy routes
        # its versions in, that chain's set.
        cluster = naming.tenant_cluster(spec.id, model_name, region)
        up = failover.upstream(cfg, tenant, model_name, region, tuple(v for v, _ in versions))
        built = clusters.tenant_cluster(cluster, up.eds(region), tenant.quotas.concurrency, tls, subsets=up.subsets)
        out.append(Resource.pack(cluster, failover.failover_cluster(built) if up.hops else built))
        served.append(routes.ModelRoute(model=model_name, targets=tuple(
            routes.VersionTarget(version=v, cluster=cluster, weight=w, subset=up.subsets,
                                 failover=failover.chain(tenant, model_name, v, region) if up.hops else ())
            for v, w in versions)))
    forbidden = tuple(sorted(m for m in cfg.models if m not in spec.models))
    headers = {
        contract.REGION_HEADER: region,
        contract.WEIGHT_HEADER: f"{tenant.weight:g}",
        contract.TIER_HEADER: spec.tier,
        # Pseudonymised types ride in the redact header too: a runtime that predates pseudonymisation
        # ignores the pseudonymise header and redacts them, never passing them raw; a current one lets
        # pseudonymise win (runtime.pii.rules).
        contract.PII_REDACT_HEADER: ",".join(sorted({*tenant.pii.redact, *tenant.pii.pseudonymise})),
        contract.PII_BLOCK_HEADER: ",".join(sorted(tenant.pii.block)),
        contract.PII_PSEUDONYMISE_HEADER: ",".join(sorted(tenant.pii.pseudonymise)),
        contract.MAX_QUEUE_HEADER: str(tenant.quotas.concurrency),
    }
    out.append(Resource.pack(naming.tenant_routes(spec.id), routes.tenant_routes(
        spec.id, tuple(served), forbidden, headers, cfg.platform.gateway.request_timeout_seconds,
        vhost_filters={**ratelimits.local_limit(cfg, tenant), **ratelimits.global_limits(cfg, tenant, region)},
        model_metadata=ratelimits.model_metadata if ratelimits.limited(cfg, tenant) else None,
        own=own.own_routes(tenant, region))))
    return out


def _memo_after(memo: dict[tuple[str, str, str], tuple[Resource, ...]],
                fresh: dict[tuple[str, str, str], tuple[Resource, ...]],
                snapshots: dict[str, _KeptSnapshot]) -> dict[tuple[str, str, str], tuple[Resource, ...]]:
    """The tenant memo after a compile: the last one with what the rebuilt snapshots hold, instead of a new
    union of every snapshot's tenants (100,000 entries copied for one edit); merged anew from the snapshots
    once stale entries (an edited tenant's old resources, a removed tenant's) reach a quarter of it, so it
    never holds much more than the current tenants."""
    memo.update(fresh)
    live = sum(len(kept.tenants) for kept in snapshots.values())
    if len(memo) > live + live // 4 + 64:
        memo = {}
        for kept in snapshots.values():
            memo.update(kept.tenants.values())
    return memo


def _shared_digest(cfg: PlatformConfig) -> str:
    """Everything outside a tenant's own spec that its resources depend on."""
    shared = {
        "models": {k: v.model_dump(mode="json") for k, v in cfg.models.items()},
        "regions": {k: [p.name for p in v.pools] for k, v in cfg.regions.items()},
        "gateway": cfg.platform.gateway.model_dump(mode="json"),
        "ratelimit": ratelimits.shared_inputs(cfg),
    }
    return hashlib.blake2b(json.dumps(shared, sort_keys=True).encode(), digest_size=8).hexdigest()


def _overall(snapshots: dict[str, Snapshot]) -> str:
    return hashlib.blake2b(
        "".join(f"{r}:{s.version}" for r, s in sorted(snapshots.items())).encode(), digest_size=6,
    ).hexdigest()


def _version(resources: list[Resource]) -> str:
    h = hashlib.blake2b(digest_size=6)
    for r in sorted(resources, key=lambda r: (r.type_url, r.name)):
        h.update(r.name.encode())
        h.update(r.version.encode())
    return h.hexdigest()
