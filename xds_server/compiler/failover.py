"""Failover inside residency (docs/design/0004): a tenant's catalog-model traffic spills from its
gateway's region to the regions its `regions.failover` lists, in order, and only to those where the
policy routes the same version (ResolvedTenant.routes), through Envoy's own priorities.

One endpoint set per (model, region, chain): priority 0 holds the gateway region's replicas of the
model, priority i the i-th failover region's, each tagged with its versions like the plain set, so a
tenant's one cluster per model (compiler/clusters.py) picks each version's subset in every priority.
Envoy sends a version's requests to its priority-0 replicas while enough of them are healthy and spills
to the next priority as they are ejected (outlier detection) or leave EDS. The chain of a tenant's model
is the union of its versions' chains; a hop holds every version deployed there, unless the policy routes
only some of the tenant's versions there (a hop naming them). Tenants share a set when their chains
agree, so the number of sets is the number of distinct chains, small however many tenants there are; a
tenant without failover keeps the shared per-model set.

The served region travels on the upstream request: each endpoint of a failover set carries its region in
its metadata, and an upstream HTTP filter on the tenant's cluster writes it into `x-fairshare-region`
after the host is picked (a route's request_headers_to_add is evaluated before host selection and sees no
upstream metadata in Envoy 1.40), so the runtime's region check still holds: a failed-over request
carries the region that serves it, and nothing else can put another region's replica in the set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.upstream_codec.v3 import upstream_codec_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.compiler import clusters, naming
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.compiler.shaping import with_failover
from xds_server.config.model import PlatformConfig, ResolvedTenant

# Endpoint metadata namespace and key holding the replica's region.
METADATA_NAMESPACE = "fairshare"
METADATA_REGION = "region"
# On the response of a failover tenant's request: the region whose replica served it.
SERVED_REGION_HEADER = "x-fairshare-served-region"
# On the request (from the route): the failover regions of the version it targets. The gateway's local
# reply names them when no region can serve; the runtime ignores it.
FAILOVER_HEADER = "x-fairshare-failover"

_REGION_FORMAT = f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:{METADATA_REGION})%"


def chain(tenant: ResolvedTenant, model: str, version: str, region: str) -> tuple[str, ...]:
    """The regions a tenant's requests for `model` `version` served by `region`'s gateway fail over to, in
    order: its failover list, less this region, less any region where the policy does not route that
    version for the tenant (not allowed, or not deployed there). Empty: no failover."""
    return _chain(tenant, region, lambda other: version in tenant.routes.get(other, {}).get(model, ()))


def own_chain(tenant: ResolvedTenant, model: str, region: str) -> tuple[str, ...]:
    """The same for one of the tenant's own models: the failover regions where the policy routes it
    (ResolvedTenant.own_routes, policy/models: allowed there, its pool and a head's base deployed there,
    its artifact in an allowed region's bucket)."""
    return _chain(tenant, region, lambda other: model in tenant.own_routes.get(other, ()))


def _chain(tenant: ResolvedTenant, region: str, routed: Callable[[str], bool]) -> tuple[str, ...]:
    out: list[str] = []
    for other in tenant.spec.regions.failover:
        if other == region or other in out:
            continue
        if routed(other):
            out.append(other)
    return tuple(out)


def model_hops(cfg: PlatformConfig, tenant: ResolvedTenant, model: str, region: str) -> tuple[naming.Hop, ...]:
    """The failover hops of the tenant's one cluster for `model` served by `region`'s gateway: each region
    of any routable version's chain, in the tenant's order, with the versions the set must hold there
    (None: every version deployed there, which is what the residency policy routes; the tenant's
    subsets pick only its own versions). Empty: no failover."""
    if not tenant.spec.regions.failover:
        return ()
    versions = routable(tenant, model, region)
    per_version = {v: chain(tenant, model, v, region) for v in versions}
    hops: list[naming.Hop] = []
    for other in tenant.spec.regions.failover:
        served = tuple(v for v in versions if other in per_version[v])
        if not served or any(h[0] == other for h in hops):
            continue
        deployed = tuple(v for v in versions if other in cfg.version_regions(model, v))
        hops.append((other, None if served == deployed else served))
    return tuple(hops)


@dataclass(frozen=True)
class Upstream:
    """Where a tenant's one cluster for a catalog model reads its endpoints (docs/design/0001). When every
    version it routes runs on one pool, in its region and in each failover hop, that pool's replicas
    serve them all (the runtime runs the version the route's header names): the cluster reads the pool's
    set, with no subsets, which cost Envoy about 4x per cluster on every endpoint change. Otherwise the
    cluster picks each version's subset of the model's set (replicas tagged with their versions)."""

    model: str
    pool: str | None  # the one pool of every version, everywhere; None: subsets
    hops: tuple[naming.Hop, ...] = ()

    @property
    def subsets(self) -> bool:
        return self.pool is None

    @property
    def chain(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.hops)

    def eds(self, region: str) -> str:
        if self.pool is not None:
            return naming.pool_endpoints(self.pool, region, self.chain)
        return (naming.failover_endpoints(self.model, region, self.hops) if self.hops
                else naming.model_endpoints(self.model, region))


def upstream(cfg: PlatformConfig, tenant: ResolvedTenant, model: str, region: str,
             versions: tuple[str, ...]) -> Upstream:
    """The upstream of the tenant's cluster for `model` (`versions`: those it routes in `region`)."""
    hops = model_hops(cfg, tenant, model, region)
    pools = {cfg.models[model].versions[v].pool for v in versions}
    if len(pools) == 1 and all(only is None and all(r in cfg.version_regions(model, v) for v in versions)
                               for r, only in hops):
        return Upstream(model, pools.pop(), hops)
    return Upstream(model, None, hops)


def routable(tenant: ResolvedTenant, model: str, region: str) -> tuple[str, ...]:
    """The versions of the tenant's split for `model` that the policy routes in `region`."""
    here = set(tenant.routes.get(region, {}).get(model, ()))
    grant = tenant.spec.models.get(model)
    return tuple(v for v in sorted(grant.split) if v in here) if grant is not None else ()


def failover_upstreams(cfg: PlatformConfig, region: str) -> set[Upstream]:
    """The distinct upstreams with failover hops of the tenants `region`'s gateway serves."""
    out: set[Upstream] = set()
    for tenant in with_failover(cfg):
        for model in tenant.routes.get(region) or ():
            versions = routable(tenant, model, region)
            up = upstream(cfg, tenant, model, region, versions) if versions else None
            if up is not None and up.hops:
                out.add(up)
    return out


def model_replicas(cfg: PlatformConfig, endpoints: EndpointDirectory, model: str, region: str,
                   only: tuple[str, ...] | None = None) -> list[clusters.Tagged]:
    """`model`'s replicas in `region`, each tagged with its versions deployed there (`only`: of those)."""
    return clusters.versioned(
        (version, endpoints.of(region, mv.pool)) for version, mv in sorted(cfg.models[model].versions.items())
        if (only is None or version in only) and region in cfg.version_regions(model, version))


def endpoint_resources_for(cfg: PlatformConfig, endpoints: EndpointDirectory, region: str,
                           upstreams: Iterable[Upstream]) -> Iterable[tuple[str, endpoint_pb2.ClusterLoadAssignment]]:
    """The failover endpoint sets of `region`'s snapshot that catalog models' subset clusters read, of
    `upstreams` (failover_upstreams; compiler/endpoint_sets.py publishes them, and the pools' for the rest)."""
    named = {up.eds(region): up for up in upstreams if up.subsets}
    for eds, up in sorted(named.items()):
        home = model_replicas(cfg, endpoints, up.model, region)
        yield eds, endpoint_set(eds, [(region, home), *(
            (r, model_replicas(cfg, endpoints, up.model, r, only)) for r, only in up.hops)])


def endpoint_set(name: str, by_region: list[tuple[str, list[clusters.Tagged]]]) -> endpoint_pb2.ClusterLoadAssignment:
    """Priority i: the i-th region's endpoints, each tagged with its region (and its versions, if tagged).
    Built the way a plain set is (clusters.lb_endpoint) so an endpoint's health (draining) is published
    the same way."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for priority, (region, eps) in enumerate(by_region):
        meta = _region_metadata(region)
        locality = endpoint_components_pb2.LocalityLbEndpoints(
            priority=priority, locality=base_pb2.Locality(region=region))
        for endpoint, versions in eps:
            lb = clusters.lb_endpoint(endpoint, versions)
            lb.metadata.filter_metadata[METADATA_NAMESPACE].CopyFrom(meta.filter_metadata[METADATA_NAMESPACE])
            locality.lb_endpoints.append(lb)
        out.endpoints.append(locality)
    return out


@functools.lru_cache(maxsize=64)
def _region_metadata(region: str) -> base_pb2.Metadata:
    meta = base_pb2.Metadata()
    meta.filter_metadata[METADATA_NAMESPACE].CopyFrom(
        struct_pb2.Struct(fields={METADATA_REGION: struct_pb2.Value(string_value=region)}))
    return meta


def failover_cluster(base: cluster_pb2.Cluster) -> cluster_pb2.Cluster:
    """A tenant cluster (clusters.tenant_cluster, read from its failover set) that writes the served
    region onto the upstream request and the response, and may eject every host of a dead region."""
    out = cluster_pb2.Cluster()
    out.CopyFrom(base)
    # The default 50% would keep one of a dead two-replica home pool in rotation among four hosts less
    # often than needed; a wholly dead region must leave the load balancer entirely.
    out.outlier_detection.max_ejection_percent.CopyFrom(wrappers_pb2.UInt32Value(value=100))
    out.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(_protocol_options())
    return out


_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@functools.lru_cache(maxsize=1)
def _protocol_options() -> any_pb2.Any:
    mutation = header_mutation_pb2.HeaderMutation(mutations=header_mutation_pb2.Mutations(
        request_mutations=[_overwrite(contract.REGION_HEADER)],
        response_mutations=[_overwrite(SERVED_REGION_HEADER)],
    ))
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions()),
        http_filters=[
            _filter("fairshare.served-region", mutation),
            _filter("envoy.filters.http.upstream_codec", upstream_codec_pb2.UpstreamCodec()),
        ],
    )
    return pack_any(options)


def _overwrite(key: str) -> mutation_rules_pb2.HeaderMutation:
    return mutation_rules_pb2.HeaderMutation(append=base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=_REGION_FORMAT),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD))


def _filter(name: str, config: Message) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=name, typed_config=pack_any(config))


def pack_any(message: Message) -> any_pb2.Any:
    """`message` as a typed_config, serialised deterministically (its resource's version stays stable)."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def local_reply_mappers(region: str) -> list[dict[str, object]]:
    """The gateway's 503 when no host can take a request (UH: none healthy; UF: every try failed to
    connect), naming the region and the tenant's failover regions, or saying it has none allowed: never a
    route elsewhere. For the listener's local_reply_config, before its other mappers."""
    no_host = {"response_flag_filter": {"flags": ["UH", "UF"]}}
    tenant = f"%REQ({contract.TENANT_HEADER})%"
    return [
        {
            "filter": {"and_filter": {"filters": [
                no_host, {"header_filter": {"header": {"name": FAILOVER_HEADER, "present_match": True}}}]}},
            "body_format_override": _json(
                f"no healthy upstream in {region} nor in its failover regions %REQ({FAILOVER_HEADER})% "
                f"for tenant {tenant}"),
        },
        {
            "filter": no_host,
            "body_format_override": _json(
                f"no healthy upstream in {region} and no failover region allowed for tenant {tenant}"),
        },
    ]


def _json(error: str) -> dict[str, object]:
    return {"json_format": {"error": error, "code": "%RESPONSE_CODE%"}, "content_type": "application/json"}
