"""Ask Envoy itself (`envoy --mode validate`) whether it would accept what changed in a snapshot,
before the snapshot is published.

Envoy applies the valid resources of a response it NACKs, so a rejected push would leave a fleet half
on the new config. Validating first keeps the contract that a bad change is rejected whole and the
last good snapshot keeps serving. Only resources that are new or changed since the last published
snapshot are checked (an edit to one tenant costs about 0.15 s); they are embedded in a static
bootstrap, written as binary proto so nothing is lost in translation.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from xds_server.compiler import upstream_tls
from xds_server.envoy.sds import sds_documents
from xds_server.envoy.spare import SpareEnvoy, validate_argv
from xds_server.listing import capped, clipped
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE, Resource, Snapshot

_XDS = "validate-xds"
# Envoy's reason for a rejection, at most (it is quoted in the log, the status page and the audit trail).
REASON_CHARS = 2_000

log = logging.getLogger("fairshare.envoy.validate")


@dataclass(frozen=True)
class EnvoyValidator:
    binary: str
    timeout_s: float = 120.0
    # Envoy validates about 4,000 resources a second here (1,000 tenants take a second). A change larger
    # than this (a first start, or onboarding thousands of tenants at once) is published unvalidated,
    # with a warning, rather than held back for many seconds; Envoy's NACKs, if any, show in status.
    max_changed: int = 5_000
    # A validate-mode Envoy started before it is needed (xds_server/envoy/spare.py): an edit's check then
    # costs about 15 ms of Envoy instead of 65-100 ms.
    keep_spare: bool = True
    _spare: SpareEnvoy | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.keep_spare:
            spare = SpareEnvoy(self.binary)
            object.__setattr__(self, "_spare", spare)
            weakref.finalize(self, spare.close)  # a validator dropped takes its spare Envoy with it

    @property
    def spare(self) -> SpareEnvoy | None:
        return self._spare

    def close(self) -> None:
        if self._spare is not None:
            self._spare.close()

    def check(self, previous: Snapshot | None, new: Snapshot) -> str | None:
        """None if Envoy accepts every new or changed resource of `new`, else Envoy's reason."""
        if previous is not None and previous.version == new.version:
            return None  # versions are content hashes: nothing changed in this region
        changes = changed_resources(previous, new)
        changed = sum(map(len, changes.values()))
        if changed > self.max_changed:
            log.warning("%d resources changed (> %d): published without pre-validation", changed, self.max_changed)
            return None
        bootstrap = _bootstrap(new, changes)
        if bootstrap is None:
            return None
        with tempfile.TemporaryDirectory(prefix="fairshare-validate-") as tmp:
            _upstream_tls_stand_in(bootstrap, Path(tmp) / "sds")
            try:
                returncode, output = self._run(bootstrap.SerializeToString(), Path(tmp))
            except (OSError, subprocess.TimeoutExpired) as err:
                return f"could not run Envoy to validate the config: {err}"
        if returncode == 0:
            return None
        log.debug("envoy --mode validate rejected %d changed resources; its whole output:\n%s", changed, output)
        return _reason(output)

    def _run(self, bootstrap: bytes, tmp: Path) -> tuple[int, str]:
        """Envoy's exit status and output for `bootstrap`: the spare's, else a fresh Envoy's."""
        done = self._spare.validate(bootstrap, self.timeout_s) if self._spare is not None else None
        if done is not None:
            return done
        path = tmp / "bootstrap.pb"  # the .pb suffix tells Envoy it is binary proto
        path.write_bytes(bootstrap)
        ran = subprocess.run(validate_argv(self.binary, str(path)), capture_output=True, text=True,
                             timeout=self.timeout_s)
        return ran.returncode, ran.stdout + ran.stderr


def _upstream_tls_stand_in(boot: bootstrap_pb2.Bootstrap, sds_dir: Path) -> None:
    """Mutual-TLS clusters name the gateway's SDS files, which only a gateway's pod holds: validate them
    over the same documents written here (Envoy checks the files exist; it loads no certificate here)."""
    clusters = [c for c in boot.static_resources.clusters if c.transport_socket.name == upstream_tls.TLS_SOCKET]
    if not clusters:
        return
    sds_dir.mkdir()
    for name, text in sds_documents(str(sds_dir)).items():
        (sds_dir / name).write_text(text)
    for cluster in clusters:
        upstream_tls.stand_in(cluster, str(sds_dir))


def changed_resources(previous: Snapshot | None, new: Snapshot) -> dict[str, list[Resource]]:
    """Type URL -> the resources of `new` that are new or changed since `previous`, by name."""
    return {t: _changed(previous, new, t) for t in (CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, ROUTE)}


def _changed(previous: Snapshot | None, new: Snapshot, type_url: str) -> list[Resource]:
    before = previous.of_type(type_url) if previous is not None else {}
    # Sorted after filtering: sorting every resource of a 10,000-tenant snapshot cost 0.35 s an edit.
    changed = [r for name, r in new.of_type(type_url).items()
               if name not in before or before[name].version != r.version]
    return sorted(changed, key=lambda r: r.name)


def _unpack(resource: Resource, message: Message) -> Message:
    resource.packed.Unpack(message)
    return message


def _bootstrap(new: Snapshot, changes: dict[str, list[Resource]]) -> bootstrap_pb2.Bootstrap | None:
    """A static bootstrap holding `changes` (type URL -> the resources of `new` that are new or changed)."""
    clusters, endpoints, listeners = changes[CLUSTER], changes[ENDPOINT], changes[LISTENER]
    scopes = {r.name: r for r in changes[SCOPED_ROUTE]}
    routes = {r.name: r for r in changes[ROUTE]}
    if not (clusters or endpoints or listeners or scopes or routes):
        return None

    boot = bootstrap_pb2.Bootstrap()
    boot.node.id, boot.node.cluster = "fairshare-validate", "fairshare-validate"
    ads = boot.dynamic_resources.ads_config  # EDS clusters name ADS as their source
    ads.api_type = config_source_pb2.ApiConfigSource.DELTA_GRPC
    ads.transport_api_version = config_source_pb2.ApiVersion.V3
    ads.grpc_services.add().envoy_grpc.cluster_name = _XDS
    xds = boot.static_resources.clusters.add(name=_XDS, type=cluster_pb2.Cluster.STATIC)
    xds.load_assignment.cluster_name = _XDS
    for res in clusters:
        boot.static_resources.clusters.add().CopyFrom(_unpack(res, cluster_pb2.Cluster()))
    for res in endpoints:
        cla = _unpack(res, endpoint_pb2.ClusterLoadAssignment())
        boot.static_resources.clusters.add(name=f"validate-eds/{res.name}", type=cluster_pb2.Cluster.STATIC,
                                           load_assignment=cla)

    # Scopes and routes are checked inside a copy of the listener, inlined as its scope list: a changed
    # RouteConfiguration with the scope that selects it, a changed scope with the routes it selects.
    scope_of_route = _scopes_of(new, set(routes), scopes)
    to_check = sorted(scope_of_route)
    listener_res = listeners[0] if listeners else next(iter(new.of_type(LISTENER).values()), None)
    if listener_res is None:
        return boot
    listener = _unpack(listener_res, listener_pb2.Listener())
    for chain in listener.filter_chains:
        for filt in chain.filters:
            hcm = hcm_pb2.HttpConnectionManager()
            if not filt.typed_config.Unpack(hcm) or not hcm.HasField("scoped_routes") or not to_check:
                continue  # without scopes to check, SRDS stays as it is: validate mode fetches nothing
            hcm.scoped_routes.ClearField("scoped_rds")
            inline = hcm.scoped_routes.scoped_route_configurations_list.scoped_route_configurations
            for route_name in to_check:
                inline_scope = inline.add()
                inline_scope.CopyFrom(scope_of_route[route_name])
                inline_scope.ClearField("route_configuration_name")
                rc = _unpack(new.of_type(ROUTE)[route_name], route_pb2.RouteConfiguration())
                rc.validate_clusters.value = False  # unchanged clusters are not in this bootstrap
                inline_scope.route_configuration.CopyFrom(rc)
            filt.typed_config.Pack(hcm)
    boot.static_resources.listeners.add().CopyFrom(listener)
    return boot


def _scopes_of(new: Snapshot, routes: set[str],
               scopes: dict[str, Resource]) -> dict[str, scoped_route_pb2.ScopedRouteConfiguration]:
    """The scope selecting each changed route, and the route of each changed scope, as route name -> scope.
    A tenant's scope and routes share a name (compiler/naming.py), so one lookup usually finds it; only a
    route whose scope is named otherwise costs a scan of every scope (10,000 unpacks at 10,000 tenants)."""
    all_scopes = new.of_type(SCOPED_ROUTE)
    found: dict[str, scoped_route_pb2.ScopedRouteConfiguration] = {}
    for res in scopes.values():
        scope = _unpack(res, scoped_route_pb2.ScopedRouteConfiguration())
        found[scope.route_configuration_name] = scope
    missing: set[str] = set()
    for name in routes - set(found):
        same = all_scopes.get(name)
        scope = _unpack(same, scoped_route_pb2.ScopedRouteConfiguration()) if same is not None else None
        if scope is not None and scope.route_configuration_name == name:
            found[name] = scope
        else:
            missing.add(name)
    if missing:
        for res in all_scopes.values():
            scope = _unpack(res, scoped_route_pb2.ScopedRouteConfiguration())
            if scope.route_configuration_name in missing:
                found[scope.route_configuration_name] = scope
    return found


def _reason(output: str) -> str:
    """Envoy's own words, without log prefixes, the temporary file's name or dumps of the proto."""
    constraint = output.rfind("Proto constraint validation failed")
    if constraint >= 0:
        return clipped(output[constraint:].splitlines()[0], REASON_CHARS)
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "[critical]" in line or "[error]" in line] or lines[-3:]
    reasons = dict.fromkeys(line.rsplit("': ", 1)[1] if "': " in line else line.rsplit("] ", 1)[-1] for line in errors)
    # A rejected config can name thousands of resources (one line each, or all on one): the reason goes to
    # the log, the status page and the audit record, so it is the first few, then a count, and bounded.
    return clipped(capped(reasons, sep="; "), REASON_CHARS)
