"""Per-tenant clusters (one per model, with circuit breakers sized from the tenant's concurrency quota)
and the shared endpoint sets they draw from: a pool's replicas, which serve every version on the pool,
or, where a model's versions run on several pools, the model's replicas each tagged with the versions it
serves, which the cluster's subset load balancer picks by (docs/design/0001)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import duration_pb2, struct_pb2, wrappers_pb2

from xds_server.compiler.endpoints import Endpoint

_ADS_SOURCE = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(),
    resource_api_version=config_source_pb2.ApiVersion.V3,
)


# Passive health: a replica that keeps failing is taken out for a while, no probe traffic per tenant.
# A dead replica (connection refused, reset, timeout: errors Envoy sees itself, counted apart from the
# model's 5xx) is ejected at its second failure, whose request the route retries on another host; it is
# let back after 2 s (its n-th ejection n x 2 s, at most 3 s) at the next 1 s sweep, so a replica that
# recovers takes traffic again, and a failed-over tenant returns home, within max_ejection_time +
# interval = 4 s (docs/design/0004). A dead one costs two retried connection attempts per 3 s.
_OUTLIER_DETECTION = outlier_detection_pb2.OutlierDetection(
    split_external_local_origin_errors=True,
    consecutive_local_origin_failure=wrappers_pb2.UInt32Value(value=2),
    consecutive_5xx=wrappers_pb2.UInt32Value(value=5),
    consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=3),
    enforcing_consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=100),
    interval=duration_pb2.Duration(seconds=1),
    base_ejection_time=duration_pb2.Duration(seconds=2),
    max_ejection_time=duration_pb2.Duration(seconds=3),
    max_ejection_percent=wrappers_pb2.UInt32Value(value=50),
)
_CONNECT_TIMEOUT = duration_pb2.Duration(nanos=500_000_000)

# Where a replica's versions live in its endpoint metadata, and which a route's metadata_match names: the
# subset load balancer's own namespace.
LB_NAMESPACE = "envoy.lb"
VERSION_KEY = "version"
# A replica serves every version of its pool (a list, each element a subset key: list_as_any), so one
# host per replica however many versions it serves; a version with no replica gets a 503 (UH), never
# another version (NO_FALLBACK).
_SUBSETS = cluster_pb2.Cluster.LbSubsetConfig(
    fallback_policy=cluster_pb2.Cluster.LbSubsetConfig.NO_FALLBACK,
    subset_selectors=[cluster_pb2.Cluster.LbSubsetConfig.LbSubsetSelector(keys=[VERSION_KEY])],
    list_as_any=True,
)


@functools.lru_cache(maxsize=256)
def _circuit_breakers(concurrency: int) -> circuit_breaker_pb2.CircuitBreakers:
    """Few distinct quotas among many tenants: build each once (protobuf copies it into each cluster)."""
    limit = wrappers_pb2.UInt32Value
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.RoutingPriority.DEFAULT,
        max_connections=limit(value=concurrency),
        # Requests past the tenant's concurrency wait briefly in Envoy, bounded at the same size, then
        # get 503 with x-envoy-overloaded: the tenant's burst stays the tenant's problem.
        max_pending_requests=limit(value=concurrency),
        max_requests=limit(value=concurrency),
        # Retries go to another host after a connection failure (compiler/routes.py): Envoy's default of
        # 3 at once at least, so a small tenant's requests in flight when a replica dies are all retried.
        max_retries=limit(value=max(3, concurrency // 4)),
        track_remaining=True,
    )
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds])


def tenant_cluster(name: str, eds_name: str, concurrency: int,
                   transport_socket: base_pb2.TransportSocket | None = None,
                   subsets: bool = False) -> cluster_pb2.Cluster:
    """`subsets`: the set's replicas carry their versions and the routes pick one (compiler/failover.py
    Upstream says when)."""
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ADS_SOURCE, service_name=eds_name),
        connect_timeout=_CONNECT_TIMEOUT,
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        lb_subset_config=_SUBSETS if subsets else None,
        circuit_breakers=_circuit_breakers(concurrency),
        outlier_detection=_OUTLIER_DETECTION,
        ignore_health_on_host_removal=True,
        transport_socket=transport_socket,  # mutual TLS to the runtimes (compiler.upstream_tls), or None
    )


_DRAINING, _UNKNOWN = health_check_pb2.HealthStatus.DRAINING, health_check_pb2.HealthStatus.UNKNOWN


# An endpoint and the model versions it serves (empty: untagged, as a pool's set for own models).
Tagged = tuple[Endpoint, tuple[str, ...]]


def versioned(by_version: Iterable[tuple[str, tuple[Endpoint, ...]]]) -> list[Tagged]:
    """Each replica once, tagged with every version that runs on it (versions sharing a pool share its
    replicas), in a stable order so the set's resource version only moves when an endpoint does."""
    tags: dict[Endpoint, list[str]] = {}
    for version, endpoints in by_version:
        for e in endpoints:
            tags.setdefault(e, []).append(version)
    return [(e, tuple(sorted(tags[e]))) for e in sorted(tags)]


def lb_endpoint(endpoint: Endpoint, versions: tuple[str, ...] = ()) -> endpoint_components_pb2.LbEndpoint:
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=endpoint.host, port_value=endpoint.port),
            ),
        ),
        # A draining endpoint takes no new requests; in-flight ones finish on their connection.
        health_status=_DRAINING if endpoint.draining else _UNKNOWN,
    )
    if versions:
        out.metadata.filter_metadata[LB_NAMESPACE].CopyFrom(_versions_struct(versions))
    return out


@functools.lru_cache(maxsize=256)
def _versions_struct(versions: tuple[str, ...]) -> struct_pb2.Struct:
    """Few distinct version lists among many endpoints: build each once."""
    listed = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=v) for v in versions])
    return struct_pb2.Struct(fields={VERSION_KEY: struct_pb2.Value(list_value=listed)})


def endpoint_set(name: str, endpoints: Iterable[Endpoint | Tagged]) -> endpoint_pb2.ClusterLoadAssignment:
    """One locality of `endpoints`: plain (a pool's, for own models) or tagged with versions (a model's)."""
    lb_endpoints = [lb_endpoint(*e) if isinstance(e, tuple) else lb_endpoint(e) for e in endpoints]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
    )


@functools.lru_cache(maxsize=1024)
def version_match(version: str) -> base_pb2.Metadata:
    """A route's (or a weighted entry's) metadata_match picking the subset of `version`'s replicas."""
    meta = base_pb2.Metadata()
    meta.filter_metadata[LB_NAMESPACE].CopyFrom(
        struct_pb2.Struct(fields={VERSION_KEY: struct_pb2.Value(string_value=version)}))
    return meta
