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
    for model_name, model in cfg.models.items():
        for version, mv in model.versions.items():
            if region in cfg.version_regions(model_name, version):
                eds = naming.version_endpoints(model_name, version, region)
                out.append(Resource.pack(eds, clusters.endpoint_set(eds, endpoints.of(region, mv.pool))))
    # Tenants with failover (docs/design/0004): one set per model version and distinct failover chain.
    out.extend(Resource.pack(eds, cla) for eds, cla in failover.endpoint_resources_for(cfg, endpoints, region))
    # Tenants' own models: one endpoint set per pool (and failover chain) that carries any, read by the
    # pool's own clusters (of that chain). A chain's set: the pool here, then in each region of the chain.
    for pool, chain in sorted(own.cluster_slots(cfg, region)):
        eds = naming.pool_endpoints(pool, region, chain)
        cla = (failover.endpoint_set(eds, [(r, endpoints.of(r, pool)) for r in (region, *chain)]) if chain
               else clusters.endpoint_set(eds, endpoints.of(region, pool)))
        out.append(Resource.pack(eds, cla))
    return out
