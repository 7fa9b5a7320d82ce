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
    # One set per model deployed here, every version's replicas tagged with their versions: read by
    # every tenant cluster of the model, whose subsets pick the versions (docs/design/0001).
    for model_name, model in cfg.models.items():
        if any(region in cfg.version_regions(model_name, v) for v in model.versions):
            eds = naming.model_endpoints(model_name, region)
            replicas = failover.model_replicas(cfg, endpoints, model_name, region)
            out.append(Resource.pack(eds, clusters.endpoint_set(eds, replicas)))
    # Tenants with failover (docs/design/0004): one set per model and distinct failover chain.
    out.extend(Resource.pack(eds, cla) for eds, cla in failover.endpoint_resources_for(cfg, endpoints, region))
    # Tenants' own models: one endpoint set per pool (and failover chain) that carries any, read by the
    # pool's own clusters (of that chain). A chain's set: the pool here, then in each region of the chain.
    for pool, chain in sorted(own.cluster_slots(cfg, region)):
        eds = naming.pool_endpoints(pool, region, chain)
        cla = (failover.endpoint_set(eds, [(r, [(e, ()) for e in endpoints.of(r, pool)]) for r in (region, *chain)])
               if chain
               else clusters.endpoint_set(eds, endpoints.of(region, pool)))
        out.append(Resource.pack(eds, cla))
    return out
