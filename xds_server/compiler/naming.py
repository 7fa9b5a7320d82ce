"""The one place Envoy resource names are derived. Names are stable across snapshots, so an edit to one
tenant changes only that tenant's resources and Envoy rebuilds nothing else."""

from __future__ import annotations

LISTENER = "gateway"
SCOPED_ROUTES = "tenants"
# The global rate-limit service (xds_server/ratelimit/), as a cluster in every region's snapshot.
RATELIMIT_CLUSTER = "fairshare/ratelimit"


def tenant_scope(tenant: str) -> str:
    return f"tenant/{tenant}"


def tenant_routes(tenant: str) -> str:
    return f"tenant/{tenant}"


TENANT_CLUSTER_PREFIX = "tenant/"


def tenant_cluster(tenant: str, model: str, region: str) -> str:
    """One cluster per tenant and model, whatever its split (docs/design/0001): its versions are subsets
    of the cluster's hosts, so its circuit breakers cap the tenant's concurrency on the model."""
    return f"{TENANT_CLUSTER_PREFIX}{tenant}/{model}/{region}"


def tenant_cluster_stats_off() -> dict[str, object]:
    """A bootstrap StatsMatcher dropping per-tenant cluster stats: about 100 stats per cluster are
    most of Envoy's per-cluster memory and CDS time at 10,000 tenants (bench/controlplane.py)."""
    return {"exclusion_list": {"patterns": [{"prefix": f"cluster.{TENANT_CLUSTER_PREFIX}"}]}}


def model_endpoints(model: str, region: str) -> str:
    """EDS name shared by every tenant cluster of one model: the replicas of all its versions deployed in
    `region`, each tagged with the versions it serves; endpoints change in one place."""
    return f"model/{model}/{region}"


def _chain(chain: tuple[str, ...]) -> str:
    return ",".join(chain)


# A failover hop: a region, and the versions the set holds there (None: every version deployed there).
Hop = tuple[str, tuple[str, ...] | None]


def _hop(hop: Hop) -> str:
    region, versions = hop
    return region if versions is None else f"{region}={'+'.join(versions)}"


def failover_endpoints(model: str, region: str, hops: tuple[Hop, ...]) -> str:
    """EDS name of a model's endpoints in `region` (priority 0) then in each region of a failover chain
    (docs/design/0004): shared by every tenant with that chain, so sets grow with distinct chains only.
    A hop that holds fewer than the versions deployed there (a policy routing only some) names them."""
    return f"{model_endpoints(model, region)}/failover/{','.join(_hop(h) for h in hops)}"


OWN_CLUSTER_PREFIX = "own."


def own_cluster(pool: str, slot: int, chain: tuple[str, ...] = ()) -> str:
    """One of a pool's shared clusters for tenants' own models (docs/design/0003): slot i carries the
    i-th live version of every split on the pool, so a split needs distinct weighted-cluster names and
    the count of clusters grows with the longest split, never with models or tenants. The snapshot is
    the region's, so the name needs no region. With a failover chain (docs/design/0004) the cluster
    reads that chain's set, shared by every tenant with the chain: `own.<pool>.<slot>.failover.<r1>,<r2>`."""
    name = f"{OWN_CLUSTER_PREFIX}{pool}.{slot}"
    return f"{name}.failover.{_chain(chain)}" if chain else name


def pool_endpoints(pool: str, region: str, chain: tuple[str, ...] = ()) -> str:
    """EDS name of a pool's replicas in a region, which every own-model cluster of the pool reads; with a
    failover chain, the pool's replicas in `region` (priority 0) then in each region of the chain."""
    name = f"pool/{pool}/{region}"
    return f"{name}/failover/{_chain(chain)}" if chain else name


def parse_tenant_cluster(name: str) -> tuple[str, str, str] | None:
    """(tenant, model, region) of a tenant cluster's name; None for any other name."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "tenant":
        return None
    return parts[1], parts[2], parts[3]


# A region split into cells (xds_server/cells, docs/design/0005): the front tier's resources.
FRONT_ROUTES = "front"
CELL_CLUSTER_PREFIX = "cell/"


def cell_cluster(cell: str) -> str:
    """The front tier's cluster of one cell's gateways (the snapshot is the region's front: no region)."""
    return f"{CELL_CLUSTER_PREFIX}{cell}"


def cell_gateway_pool(cell: str) -> str:
    """The pool name of a cell's gateways in the endpoint directory (and the `fairshare.io/pool` label of
    the cell's gateway Service), so they are found like runtime pools."""
    return f"gateway.{cell}"


def cell_gateway_endpoints(cell: str, region: str) -> str:
    return f"{pool_endpoints(cell_gateway_pool(cell), region)}"
