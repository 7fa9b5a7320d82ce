"""Per-tenant routes: the tenant's canary split per model, its rules as headers, and clear refusals.

A split is weighted entries that all name the tenant's one cluster for the model, each with the header
naming its version; where the model's versions run on different pools, each entry also picks its
version's subset (ClusterWeight.metadata_match, compiler/clusters.py), and an explicit version pins it the
same way (RouteAction.metadata_match)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from inference_images.runtime import __version__
from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.compiler import clusters, naming
from xds_server.compiler.failover import FAILOVER_HEADER, pack_any
from xds_server.compiler.own import HASH_POLICY, OwnModelRoute


@dataclass(frozen=True)
class VersionTarget:
    version: str
    cluster: str  # the tenant's cluster for the model, whatever the version
    weight: int
    # Whether the cluster's replicas carry versions (compiler/failover.py Upstream): the route then picks
    # the version's subset; otherwise every replica serves every version and the header alone picks it.
    subset: bool = False
    # The regions its requests fail over to (compiler/failover.py), named to the gateway's local reply.
    failover: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelRoute:
    model: str
    targets: tuple[VersionTarget, ...]


def tenant_scope(tenant: str) -> scoped_route_pb2.ScopedRouteConfiguration:
    return scoped_route_pb2.ScopedRouteConfiguration(
        name=naming.tenant_scope(tenant),
        route_configuration_name=naming.tenant_routes(tenant),
        key=scoped_route_pb2.ScopedRouteConfiguration.Key(
            fragments=[scoped_route_pb2.ScopedRouteConfiguration.Key.Fragment(string_key=tenant)],
        ),
    )


def tenant_routes(
    tenant: str,
    served: tuple[ModelRoute, ...],
    forbidden_models: tuple[str, ...],
    request_headers: Mapping[str, str],
    timeout_seconds: float,
    vhost_filters: Mapping[str, any_pb2.Any] | None = None,
    model_metadata: Callable[[str], base_pb2.Metadata] | None = None,
    own: tuple[OwnModelRoute, ...] = (),
) -> route_pb2.RouteConfiguration:
    """`vhost_filters`: per-filter config on the tenant's virtual host (its rate limits, from
    compiler/ratelimits.py); `model_metadata`: each model route's metadata (the model its requests count
    against, which the rate-limit descriptors read); `own`: the tenant's own models (compiler/own.py),
    only ever in this tenant's RouteConfiguration, so to every other tenant they do not exist."""
    routes: list[rc.Route] = []
    timeout = duration(timeout_seconds)
    for model in served:
        metadata = model_metadata(model.model) if model_metadata is not None else None
        # The versions the tenant is granted, for the model's metadata: the replica serves every tenant's,
        # and lists only these (as for an own model), so no tenant learns what others were granted.
        granted = [_header(contract.MODEL_VERSIONS_HEADER, ",".join(sorted(t.version for t in model.targets)))]
        # An explicit version in the path pins that version, if the tenant is granted it; any other falls
        # through to the split's route, whose version header the runtime holds the path to (a 404).
        for target in model.targets:
            routes.append(rc.Route(
                name=f"{model.model}/{target.version}",
                match=rc.RouteMatch(path_separated_prefix=f"/v2/models/{model.model}/versions/{target.version}"),
                route=rc.RouteAction(cluster=target.cluster, metadata_match=_match(target),
                                     timeout=timeout, retry_policy=_RETRY),
                request_headers_to_add=_target_headers(target) + granted,
                metadata=metadata,
            ))
        live = [t for t in model.targets if t.weight > 0]
        split = rc.WeightedCluster(clusters=[
            rc.WeightedCluster.ClusterWeight(
                name=t.cluster,
                weight=wrappers_pb2.UInt32Value(value=t.weight),
                metadata_match=_match(t),
                # The runtime reads the version from this header; a subset only picks the replicas.
                request_headers_to_add=_target_headers(t),
            )
            for t in live
        ])
        routes.append(rc.Route(
            name=model.model,
            match=rc.RouteMatch(path_separated_prefix=f"/v2/models/{model.model}"),
            route=rc.RouteAction(weighted_clusters=split, timeout=timeout, retry_policy=_RETRY),
            request_headers_to_add=granted,
            metadata=metadata,
        ))
    for own_model in own:
        routes.extend(_own_model_routes(own_model, timeout, model_metadata))
    for model_name in forbidden_models:
        routes.append(_refuse(
            f"forbidden/{model_name}", f"/v2/models/{model_name}", 403,
            f"tenant {tenant} may not use model {model_name}",
        ))
    routes.append(_refuse("unknown-model", "/v2/models", 404, "unknown model"))
    routes.append(SERVER_METADATA_ROUTE)
    routes.append(rc.Route(
        name="not-found",
        match=rc.RouteMatch(prefix="/"),
        direct_response=rc.DirectResponseAction(status=404, body=_body("no such endpoint")),
    ))
    vhost = rc.VirtualHost(
        name=f"tenant-{tenant}",
        domains=["*"],
        routes=routes,
        request_headers_to_add=[_header(k, v) for k, v in sorted(request_headers.items())],
        typed_per_filter_config=dict(vhost_filters or {}),
    )
    return route_pb2.RouteConfiguration(name=naming.tenant_routes(tenant), virtual_hosts=[vhost])


def _own_model_routes(model: OwnModelRoute, timeout: duration_pb2.Duration,
                      model_metadata: Callable[[str], base_pb2.Metadata] | None) -> list[rc.Route]:
    """Like a catalog model's routes (an explicit version pins it, where there is more than one; the
    rest follow the split), onto the pool's hashed clusters, with what to load as headers: the model's
    on the route, each version's on its weighted cluster."""
    metadata = model_metadata(model.model) if model_metadata is not None else None
    model_headers = [_own_header(k, v) for k, v in model.headers]
    out: list[rc.Route] = []
    # A model of one version gets no pinned route: its split route already matches
    # /v2/models/<m>/versions/<v> and sends it to the same slot with the same headers (a version the
    # path names that is not the header's is the runtime's 404, behind either route). One route per such
    # model instead of two halves what Envoy validates, applies and holds for it.
    for target in model.targets if len(model.targets) > 1 else ():
        out.append(rc.Route(
            name=f"{model.model}/{target.version}",
            match=rc.RouteMatch(path_separated_prefix=f"/v2/models/{model.model}/versions/{target.version}"),
            route=rc.RouteAction(cluster=target.cluster, timeout=timeout, retry_policy=_RETRY,
                                 hash_policy=HASH_POLICY),
            request_headers_to_add=model_headers + [_own_header(k, v) for k, v in target.headers],
            metadata=metadata,
        ))
    split = rc.WeightedCluster(clusters=[
        rc.WeightedCluster.ClusterWeight(
            name=t.cluster,
            weight=wrappers_pb2.UInt32Value(value=t.weight),
            request_headers_to_add=[_own_header(k, v) for k, v in t.headers],
        )
        for t in model.targets if t.weight > 0
    ])
    out.append(rc.Route(
        name=model.model,
        match=rc.RouteMatch(path_separated_prefix=f"/v2/models/{model.model}"),
        route=rc.RouteAction(weighted_clusters=split, timeout=timeout, retry_policy=_RETRY, hash_policy=HASH_POLICY),
        request_headers_to_add=model_headers,
        metadata=metadata,
    ))
    return out


def _own_header(key: str, value: str) -> base_pb2.HeaderValueOption:
    """Not memoised like _header: artifacts and digests are distinct per model version."""
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def _match(target: VersionTarget) -> base_pb2.Metadata | None:
    return clusters.version_match(target.version) if target.subset else None


def _target_headers(target: VersionTarget) -> list[base_pb2.HeaderValueOption]:
    out = [_header(contract.MODEL_VERSION_HEADER, target.version)]
    if target.failover:
        out.append(_header(FAILOVER_HEADER, ",".join(target.failover)))
    return out


# Retried when the request never reached a model (a refused or failed connection, a replica's 503: not ready
# yet, shutting down; overload is the runtime's 429), and when the replica died under it (reset: an
# inference is a pure function of its input, so a replica killed mid-request is retried, not failed; the
# bench measured 4 of 6,515 failed at a kill without it). Each retry goes to
# another host (a dead replica is not tried twice) and, where the cluster has failover priorities, to a
# priority not tried yet, so a request that found its home pool dead is served by the next region before
# outlier detection has ejected the home replicas (docs/design/0004). One priority: the plugin is a no-op.
_RETRY = rc.RetryPolicy(
    retry_on="connect-failure,refused-stream,reset,retriable-status-codes",
    retriable_status_codes=[503],
    num_retries=wrappers_pb2.UInt32Value(value=2),
    retry_host_predicate=[rc.RetryPolicy.RetryHostPredicate(
        name="envoy.retry_host_predicates.previous_hosts",
        typed_config=pack_any(previous_hosts_pb2.PreviousHostsPredicate()))],
    host_selection_retry_max_attempts=3,
    retry_priority=rc.RetryPolicy.RetryPriority(
        name="envoy.retry_priorities.previous_priorities",
        typed_config=pack_any(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1))),
)


# Open Inference Protocol's server metadata (`GET /v2`, tritonclient's get_server_metadata), answered by the
# gateway: behind it there is no one server, and what a client may rely on (the protocol, the binary tensor
# extension) is the same on every replica. The local reply mapper (compiler/listener.py) passes a 200's
# body through as it is, where it wraps every refusal's message in the JSON error shape.
SERVER_NAME = "fairshare-gateway"
SERVER_METADATA_ROUTE = rc.Route(
    name="server-metadata",
    match=rc.RouteMatch(path="/v2"),
    direct_response=rc.DirectResponseAction(status=200, body=base_pb2.DataSource(inline_string=json.dumps(
        {"name": SERVER_NAME, "version": __version__, "extensions": [contract.BINARY_EXTENSION]}))),
)


def _refuse(name: str, prefix: str, status: int, message: str) -> rc.Route:
    return rc.Route(
        name=name,
        match=rc.RouteMatch(path_separated_prefix=prefix),
        direct_response=rc.DirectResponseAction(status=status, body=_body(message)),
    )


def _body(text: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(inline_string=text)


@functools.lru_cache(maxsize=4096)
def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    """Memoised: the same few (header, value) pairs recur across thousands of tenants."""
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
