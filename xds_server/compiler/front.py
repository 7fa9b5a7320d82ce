"""The front tier of a region split into cells: verify the tenant, then one exact-match lookup picks its
cell's gateways (docs/design/0005).

The lookup is a matcher tree with an exact-match map keyed by the verified tenant header (O(1) in
tenants, unlike a list of routes Envoy would scan in order); each entry's action is a small route to
the cell's cluster. One cluster per cell, over the endpoint set of the cell's gateways.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf import wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.cells import layout
from xds_server.cells.view import changed_tenants
from xds_server.compiler import clusters, naming, routes
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.compiler.failover import pack_any
from xds_server.config.model import Region
from xds_server.snapshot import CLUSTER, Resource, Snapshot

# A retry never crosses cells: the front retries a refused or reset connection on another gateway of
# the same cell (the tenant's only cluster here), which is what a rolling restart of a cell needs.
_RETRY = rc.RetryPolicy(
    retry_on="connect-failure,refused-stream,reset",
    num_retries=wrappers_pb2.UInt32Value(value=2),
    retry_host_predicate=[rc.RetryPolicy.RetryHostPredicate(
        name="envoy.retry_host_predicates.previous_hosts",
        typed_config=pack_any(previous_hosts_pb2.PreviousHostsPredicate()))],
    host_selection_retry_max_attempts=3,
)
# The front multiplexes every tenant of a cell onto the cell's gateways: Envoy's default circuit
# breakers (1,024 requests per cluster) would cap a whole cell at what one tenant may use. Each tenant's
# own cap is its cluster's in the cell.
_UNBOUNDED = 1_000_000
_CIRCUIT_BREAKERS = circuit_breaker_pb2.CircuitBreakers(thresholds=[circuit_breaker_pb2.CircuitBreakers.Thresholds(
    max_connections=wrappers_pb2.UInt32Value(value=_UNBOUNDED),
    max_pending_requests=wrappers_pb2.UInt32Value(value=_UNBOUNDED),
    max_requests=wrappers_pb2.UInt32Value(value=_UNBOUNDED),
    max_retries=wrappers_pb2.UInt32Value(value=_UNBOUNDED),
)])


def front_routes(placement: Mapping[str, str], timeout_seconds: float) -> route_pb2.RouteConfiguration:
    """`placement`: tenant -> the cell the front sends it to."""
    tree = matcher_pb2.Matcher.MatcherTree(
        input=extension_pb2.TypedExtensionConfig(
            name="tenant", typed_config=pack_any(http_inputs_pb2.HttpRequestHeaderMatchInput(
                header_name=contract.TENANT_HEADER))),
        exact_match_map=matcher_pb2.Matcher.MatcherTree.MatchMap(map={
            tenant: _on_match(cell, timeout_seconds) for tenant, cell in placement.items()
        }),
    )
    # The retry policy on the virtual host, not on each entry's route: Envoy builds a route's own policy
    # per route (100,000 tenants: 208 MB allocated with it, 150 MB with the virtual host's shared one).
    vhost = rc.VirtualHost(name="front", domains=["*"], matcher=matcher_pb2.Matcher(matcher_tree=tree),
                           retry_policy=_RETRY)
    return route_pb2.RouteConfiguration(name=naming.FRONT_ROUTES, virtual_hosts=[vhost])


@dataclass
class FrontTable:
    """A region's front table as last compiled: the placement it routes, its message, and the packed
    resource. Kept by the compiler between compiles and patched where a few tenants came, went or changed
    cells (onboarding or offboarding one among 100,000: building the 100,000 entries again cost 0.4 s; a
    patch costs the comparison, about 10 ms, and the serialisation). Deterministic serialisation sorts a
    map's keys, so a patched table's bytes are a fresh one's."""

    timeout_seconds: float
    placement: dict[str, str]
    message: route_pb2.RouteConfiguration
    resource: Resource
    # The mapping the placement was last taken from: the same object again needs no comparison.
    source: Mapping[str, str]

    @classmethod
    def build(cls, placement: Mapping[str, str], timeout_seconds: float) -> FrontTable:
        message = front_routes(placement, timeout_seconds)
        return cls(timeout_seconds, dict(placement), message, Resource.pack(naming.FRONT_ROUTES, message),
                   placement)

    def routes(self, placement: Mapping[str, str]) -> Resource:
        """The table for `placement`, patched into this one where that is less work than building it."""
        if placement is self.source or placement == self.placement:
            self.source = placement
            return self.resource
        changed = changed_tenants(self.placement, placement)
        if changed is None:
            fresh = FrontTable.build(placement, self.timeout_seconds)
            self.placement, self.message, self.resource = fresh.placement, fresh.message, fresh.resource
        else:
            entries = self.message.virtual_hosts[0].matcher.matcher_tree.exact_match_map.map
            for tenant in changed:
                if (cell := placement.get(tenant)) is None:
                    del entries[tenant]
                else:
                    entries[tenant].CopyFrom(_on_match(cell, self.timeout_seconds))
            self.placement = dict(placement)
            self.resource = Resource.pack(naming.FRONT_ROUTES, self.message)
        self.source = placement
        return self.resource


@functools.lru_cache(maxsize=1024)
def _on_match(cell: str, timeout_seconds: float) -> matcher_pb2.Matcher.OnMatch:
    """One per cell, copied into every tenant's entry (protobuf copies on assignment)."""
    route = rc.Route(
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(
            cluster=naming.cell_cluster(cell),
            timeout=routes.duration(timeout_seconds),
        ),
    )
    return matcher_pb2.Matcher.OnMatch(
        action=extension_pb2.TypedExtensionConfig(name="cell", typed_config=pack_any(route)))


def cell_cluster(cell: str, region: str) -> cluster_pb2.Cluster:
    """The cell's gateways, over HTTP/2 (every tenant of the cell on a few connections), with the passive
    health of the tenant clusters: a gateway that refuses connections is ejected, its request retried."""
    built = clusters.tenant_cluster(naming.cell_cluster(cell), naming.cell_gateway_endpoints(cell, region), 1)
    built.circuit_breakers.CopyFrom(_CIRCUIT_BREAKERS)
    built.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(pack_any(_HTTP2))
    return built


_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP2 = http_protocol_options_pb2.HttpProtocolOptions(
    explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
        http2_protocol_options=protocol_pb2.Http2ProtocolOptions()))



def front_cells(region: Region, members: Iterable[str]) -> list[str]:
    """The cells the front tier must reach: the region's, then any other that still holds tenants (`members`:
    the cells of the view). A cell taken out of the layout keeps its tenants until each one's new cell holds
    it, and the front keeps sending them there meanwhile: without its cluster, those requests would fail."""
    cells = layout.cells(region)
    return [*cells, *sorted(set(members) - set(cells))]


def cell_endpoint_sets(region_id: str, cells: Iterable[str], endpoints: EndpointDirectory) -> list[Resource]:
    """Each cell's gateways, as the front tier's endpoint sets."""
    out = []
    for cell in cells:
        name = naming.cell_gateway_endpoints(cell, region_id)
        gateways = endpoints.of(region_id, naming.cell_gateway_pool(cell))
        out.append(Resource.pack(name, clusters.endpoint_set(name, gateways)))
    return out


def cells_reached(front: Snapshot) -> list[str]:
    """The cells a front snapshot has a cluster for (`front_cells` when it was built)."""
    prefix = naming.CELL_CLUSTER_PREFIX
    return [name.removeprefix(prefix) for name in front.of_type(CLUSTER) if name.startswith(prefix)]
