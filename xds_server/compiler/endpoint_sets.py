"""Every endpoint set (ClusterLoadAssignment) of one region: the only resources an endpoint change
touches. Kept apart from the tenant resources so a pod coming or going is published by rebuilding these
alone (`Compiler.with_endpoints`), without loading or compiling the tenants again."""

from __future__ import annotations

from xds_server.compiler import clusters, failover, naming, own
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.config.model import PlatformConfig
from xds_server.snapshot import Resource


def endpoint_resources(cfg: PlatformConfig, endpoints: EndpointDirectory, region: str) -> list[Resource]:
    out: list[Resource] = []
    # A model whose versions here run on more than one pool: its replicas tagged with their versions, for
    # the subsets of the tenant clusters that route several of them (docs/design/0001).
    for model_name, model in cfg.models.items():
        here = {mv.pool for v, mv in model.versions.items() if region in cfg.version_regions(model_name, v)}
        if len(here) > 1:
            eds = naming.model_endpoints(model_name, region)
            replicas = failover.model_replicas(cfg, endpoints, model_name, region)
            out.append(Resource.pack(eds, clusters.endpoint_set(eds, replicas)))
    # The same with failover (docs/design/0004): one set per model and distinct chain.
    upstreams = failover.failover_upstreams(cfg, region)
    out.extend(Resource.pack(eds, cla)
               for eds, cla in failover.endpoint_resources_for(cfg, endpoints, region, upstreams))
    # Every pool's replicas (and per failover chain): read by the tenant clusters of the models whose
    # versions all run on that pool (most), and by the pool's own-model clusters (of that chain). A
    # chain's set: the pool here, then in each region of the chain.
    pools: set[tuple[str, tuple[str, ...]]] = {
        (mv.pool, ()) for m, model in cfg.models.items() for v, mv in model.versions.items()
        if region in cfg.version_regions(m, v)}
    pools |= {(up.pool, up.chain) for up in upstreams if up.pool is not None}
    pools |= set(own.cluster_slots(cfg, region))
    for pool, chain in sorted(pools):
        eds = naming.pool_endpoints(pool, region, chain)
        cla = (failover.endpoint_set(eds, [(r, [(e, ()) for e in endpoints.of(r, pool)]) for r in (region, *chain)])
               if chain
               else clusters.endpoint_set(eds, endpoints.of(region, pool)))
        out.append(Resource.pack(eds, cla))
    return out
