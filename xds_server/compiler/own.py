"""Tenants' own models in Envoy (docs/design/0003): shared, hashed clusters per pool, and each tenant's
own-model routes, which carry what the runtime must load as headers.

No cluster per model or per tenant: at ~95 KiB of Envoy memory per tenant cluster, 10,000 own models
would cost a gigabyte on every gateway. Per region and pool, `own.<pool>.<slot>` clusters all read the
pool's one endpoint set with RING_HASH and bounded load; a tenant's route hashes on the tenant header
(set by the JWT filter) and on the model name taken from `:path`, both present before the router runs,
so every call for one model lands on the replica that holds it warm, and a hot model spills onto the
next replica on the ring once its replica carries more than the balance factor allows.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import wrappers_pb2

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.compiler import failover, naming
from xds_server.compiler.clusters import _ADS_SOURCE, _CONNECT_TIMEOUT, _OUTLIER_DETECTION
from xds_server.compiler.shaping import with_own_models
from xds_server.config.model import PlatformConfig, ResolvedTenant

OWNER_HEADER = contract.MODEL_OWNER_HEADER
FORMAT_HEADER = contract.MODEL_FORMAT_HEADER
BASE_HEADER = contract.MODEL_BASE_HEADER
ARTIFACT_HEADER = contract.MODEL_ARTIFACT_HEADER
SHA256_HEADER = contract.MODEL_SHA256_HEADER
BYTES_HEADER = contract.MODEL_BYTES_HEADER

# Bounded load (Envoy's consistent_hashing_lb_config.hash_balance_factor, in percent): a replica takes
# at most 1.5x the pool's average outstanding requests before the ring sends its next request onward,
# so a hot model spills onto a second replica instead of queueing on one.
HASH_BALANCE_FACTOR = 150
# The ring's size per replica: 1,024 entries spread models evenly over a handful of replicas.
MIN_RING_SIZE = 1024
# The shared cluster's breaker is the pool's, not a tenant's (a tenant's concurrency is held by the
# runtime's per-tenant queue bound, x-fairshare-max-queue): high enough never to be the limit.
POOL_CONCURRENCY = 100_000
# The model name, as the ring hashes it: /v2/models/<m>/infer, /v2/models/<m>, /v2/models/<m>/ready and
# /v2/models/<m>/versions/<v>/... all give <m>, so one model's calls share a replica.
MODEL_FROM_PATH = r"^/v2/models/([^/]+).*$"


@dataclass(frozen=True)
class OwnTarget:
    version: str
    cluster: str  # own.<pool>.<slot>: slot i for the i-th live version of the split, 0 for weight 0
    weight: int
    headers: tuple[tuple[str, str], ...]  # version, artifact, sha256


@dataclass(frozen=True)
class OwnModelRoute:
    model: str
    headers: tuple[tuple[str, str], ...]  # owner, format, base (head only), failover regions (if any)
    targets: tuple[OwnTarget, ...]  # every version, sorted


def own_routes(tenant: ResolvedTenant, region: str) -> tuple[OwnModelRoute, ...]:
    """The tenant's own models routed in `region` (policy/models decided which)."""
    out: list[OwnModelRoute] = []
    spec = tenant.spec
    for name in tenant.own_routes.get(region, []):
        model = spec.own_models.get(name)
        if model is None:
            continue
        headers = [(OWNER_HEADER, spec.id), (FORMAT_HEADER, str(model.format)),
                   (contract.MODEL_VERSIONS_HEADER, ",".join(sorted(model.versions)))]
        if model.base is not None:
            headers.append((BASE_HEADER, model.base))
        # With failover regions the policy routes the model in (docs/design/0004), the chain's clusters,
        # and the regions named to the gateway's 503 as for catalog models.
        chain = failover.own_chain(tenant, name, region) if spec.regions.failover else ()
        if chain:
            headers.append((failover.FAILOVER_HEADER, ",".join(chain)))
        live = [v for v in sorted(model.split) if model.split[v] > 0]
        targets = tuple(
            OwnTarget(version=v, cluster=naming.own_cluster(model.pool, live.index(v) if v in live else 0, chain),
                      weight=model.split.get(v, 0),
                      headers=((contract.MODEL_VERSION_HEADER, v), (ARTIFACT_HEADER, ov.artifact),
                               (SHA256_HEADER, ov.sha256),
                               *(((BYTES_HEADER, str(ov.bytes)),) if ov.bytes is not None else ())))
            for v, ov in sorted(model.versions.items())
        )
        out.append(OwnModelRoute(model=name, headers=tuple(headers), targets=targets))
    return tuple(out)


def cluster_slots(cfg: PlatformConfig, region: str) -> dict[tuple[str, tuple[str, ...]], int]:
    """Per (pool of `region`, failover chain) the routes use, the own-model clusters they need: the
    longest live split there. Chain () is the pool's plain clusters; a chain's clusters exist only while
    some own model fails over along it, so they grow with distinct chains, never with tenants."""
    slots: dict[tuple[str, tuple[str, ...]], int] = {}
    pools = {p.name for p in cfg.regions[region].pools}
    for tenant in with_own_models(cfg):
        has_failover = bool(tenant.spec.regions.failover)
        for name in tenant.own_routes.get(region, ()):
            model = tenant.spec.own_models.get(name)
            if model is None or model.pool not in pools:
                continue
            key = (model.pool, failover.own_chain(tenant, name, region) if has_failover else ())
            live = sum(1 for w in model.split.values() if w > 0)
            slots[key] = max(slots.get(key, 1), live)
    return slots


def own_clusters(cfg: PlatformConfig, region: str,
                 transport_socket: base_pb2.TransportSocket | None = None) -> list[cluster_pb2.Cluster]:
    """Every own-model cluster of `region`'s snapshot: a chain's read its set with priorities and carry
    the served-region filter (compiler/failover.py), the plain ones are unchanged by failover."""
    out: list[cluster_pb2.Cluster] = []
    for (pool, chain), slots in sorted(cluster_slots(cfg, region).items()):
        eds = naming.pool_endpoints(pool, region, chain)
        for slot in range(slots):
            built = own_cluster(naming.own_cluster(pool, slot, chain), eds, transport_socket)
            out.append(failover.failover_cluster(built) if chain else built)
    return out


@functools.lru_cache(maxsize=1)
def _pool_breakers() -> circuit_breaker_pb2.CircuitBreakers:
    limit = wrappers_pb2.UInt32Value(value=POOL_CONCURRENCY)
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.RoutingPriority.DEFAULT, max_connections=limit, max_pending_requests=limit,
        max_requests=limit, max_retries=wrappers_pb2.UInt32Value(value=POOL_CONCURRENCY // 4),
    )])


# Every tenant's own models on a pool share these clusters, and one tenant's broken model answers 503 at
# once on every replica (its failed load's backoff): counted against the replica, as the per-tenant
# clusters count a 5xx, it ejected replicas from every other tenant's own models (moved off their warm
# replica, loaded cold elsewhere). Here only the replica's own failures eject it: connect failures, resets
# and timeouts (local origin); a replica that cannot serve at all leaves through its readiness (EDS).
_SHARED_OUTLIER_DETECTION = copy.deepcopy(_OUTLIER_DETECTION)
for _enforcing in ("consecutive_5xx", "consecutive_gateway_failure", "success_rate", "failure_percentage"):
    getattr(_SHARED_OUTLIER_DETECTION, f"enforcing_{_enforcing}").value = 0


def own_cluster(name: str, eds_name: str,
                transport_socket: base_pb2.TransportSocket | None = None) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ADS_SOURCE, service_name=eds_name),
        connect_timeout=_CONNECT_TIMEOUT,
        lb_policy=cluster_pb2.Cluster.RING_HASH,
        ring_hash_lb_config=cluster_pb2.Cluster.RingHashLbConfig(
            minimum_ring_size=wrappers_pb2.UInt64Value(value=MIN_RING_SIZE)),
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            consistent_hashing_lb_config=cluster_pb2.Cluster.CommonLbConfig.ConsistentHashingLbConfig(
                hash_balance_factor=wrappers_pb2.UInt32Value(value=HASH_BALANCE_FACTOR))),
        circuit_breakers=_pool_breakers(),
        outlier_detection=_SHARED_OUTLIER_DETECTION,
        ignore_health_on_host_removal=True,
        transport_socket=transport_socket,
    )


HASH_POLICY = (
    rc.RouteAction.HashPolicy(header=rc.RouteAction.HashPolicy.Header(header_name=contract.TENANT_HEADER)),
    rc.RouteAction.HashPolicy(header=rc.RouteAction.HashPolicy.Header(
        header_name=":path",
        regex_rewrite=regex_pb2.RegexMatchAndSubstitute(
            pattern=regex_pb2.RegexMatcher(regex=MODEL_FROM_PATH), substitution=r"\1"),
    )),
)
