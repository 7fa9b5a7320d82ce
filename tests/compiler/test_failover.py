"""Failover inside residency (docs/design/0004): a tenant's cluster for a model reads a set with
priorities from exactly its failover regions where the policy routes its versions, each replica tagged
with its versions (one cluster per tenant and model, docs/design/0001), and nothing else changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from tests.compiler.test_compile import unpack
from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, Endpoint, EndpointDirectory
from xds_server.compiler.failover import FAILOVER_HEADER, METADATA_NAMESPACE, SERVED_REGION_HEADER
from xds_server.config import load_config
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, Snapshot

JWKS = '{"keys": []}'
US, EU = "us-east-1", "eu-west-1"
ENDPOINTS = EndpointDirectory({
    (region, pool): (Endpoint("127.0.0.1", base + 1), Endpoint("127.0.0.1", base + 2))
    for (region, pool), base in {(US, "gpu-small"): 9000, (US, "cpu-general"): 9100,
                                 (EU, "gpu-small"): 9200, (EU, "cpu-general"): 9300}.items()
})


def edit_tenant(cfg_dir: Path, tenant: str, **fields: object) -> None:
    path = cfg_dir / "tenants" / f"{tenant}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(fields)
    path.write_text(yaml.safe_dump(data))


def compile_dir(cfg_dir: Path, endpoints: EndpointDirectory = ENDPOINTS) -> CompiledPlatform:
    return Compiler().compile(CompileInputs(load_config(cfg_dir), endpoints, JWKS))


@pytest.fixture
def failover_dir(cfg_dir: Path) -> Path:
    """acme (us-east-1 home, allowed in the EU) fails over to eu-west-1; classifier v2 (weight 0) runs
    only in the US, so that version has nowhere to fail over to."""
    edit_tenant(cfg_dir, "acme", regions={"home": US, "allowed": [US, EU], "failover": [EU]},
                models={"embedder": {"split": {"v1": 90, "v2": 10}}, "classifier": {"split": {"v1": 100, "v2": 0}}})
    return cfg_dir


def ports(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[int, list[tuple[int, str]]]:
    """priority -> [(port, region metadata)]."""
    out: dict[int, list[tuple[int, str]]] = {}
    for loc in cla.endpoints:
        for lb in loc.lb_endpoints:
            region = lb.metadata.filter_metadata[METADATA_NAMESPACE].fields["region"].string_value
            out.setdefault(loc.priority, []).append((lb.endpoint.address.socket_address.port_value, region))
    return out


def versions(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[int, set[tuple[str, ...]]]:
    """priority -> the version tags its replicas carry (the subsets they serve)."""
    return {loc.priority: {tuple(v.string_value for v in
                                 lb.metadata.filter_metadata["envoy.lb"].fields["version"].list_value.values)
                           for lb in loc.lb_endpoints} for loc in cla.endpoints}


def test_failover_tenant_reads_a_set_with_priorities_from_exactly_its_failover_regions(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    cluster = unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster)
    eds = cluster.eds_cluster_config.service_name
    # Both embedder versions run on gpu-small, in both regions: the pool's chain set serves them all,
    # no subsets (shared with own models failing over along the same chain).
    assert eds == "pool/gpu-small/us-east-1/failover/eu-west-1"
    assert not cluster.HasField("lb_subset_config")
    cla = unpack(us, ENDPOINT, eds, endpoint_pb2.ClusterLoadAssignment)
    # Priority 0: the gateway's own region; 1: the failover region. Nothing else, and each tagged.
    assert ports(cla) == {0: [(9001, US), (9002, US)], 1: [(9201, EU), (9202, EU)]}
    assert [loc.locality.region for loc in cla.endpoints] == [US, EU]
    # The served region is written onto the upstream request (the runtime's region check) and response.
    options = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(options)
    assert [f.name for f in options.http_filters] == ["fairshare.served-region", "envoy.filters.http.upstream_codec"]
    assert cluster.outlier_detection.max_ejection_percent.value == 100
    # The route names the failover regions, for the gateway's 503 when none can serve.
    vhost = unpack(us, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "tenant/acme",
                   route_pb2.RouteConfiguration).virtual_hosts[0]
    split = next(r for r in vhost.routes if r.name == "embedder").route.weighted_clusters.clusters
    assert {h.header.key: h.header.value for h in split[0].request_headers_to_add}[FAILOVER_HEADER] == EU


def _route_headers(snapshot: Snapshot, tenant: str, route: str) -> dict[str, str]:
    vhost = unpack(snapshot, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", f"tenant/{tenant}",
                   route_pb2.RouteConfiguration).virtual_hosts[0]
    return {h.header.key: h.header.value for r in vhost.routes if r.name == route for h in r.request_headers_to_add}


def test_version_not_routed_in_the_failover_region_does_not_fail_over(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    # classifier v2 is deployed only in the US: policy routes it nowhere else, so no EU replica carries
    # it, and its subset has only the US priority; v1's fails over. The EU's cpu-general replicas do not
    # run v2, so the cluster cannot read the pool's set: it picks subsets of the model's.
    cluster = unpack(us, CLUSTER, "tenant/acme/classifier/us-east-1", cluster_pb2.Cluster)
    eds = cluster.eds_cluster_config.service_name
    assert eds == "model/classifier/us-east-1/failover/eu-west-1"
    assert cluster.lb_subset_config.subset_selectors[0].keys == ["version"]
    pinned = next(r for r in unpack(us, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "tenant/acme",
                                    route_pb2.RouteConfiguration).virtual_hosts[0].routes if r.name == "classifier/v2")
    assert pinned.route.metadata_match.filter_metadata["envoy.lb"].fields["version"].string_value == "v2"
    assert versions(unpack(us, ENDPOINT, eds, endpoint_pb2.ClusterLoadAssignment)) == {0: {("v1", "v2")}, 1: {("v1",)}}
    assert FAILOVER_HEADER not in _route_headers(us, "acme", "classifier/v2")
    assert _route_headers(us, "acme", "classifier/v1")[FAILOVER_HEADER] == EU


def test_versions_on_different_pools_fail_over_each_to_its_own_replicas(failover_dir: Path) -> None:
    """embedder v2 moved to cpu-general: acme's one embedder cluster picks each version's subset of the
    model's chain set, whose every priority holds each version's replicas tagged with it."""
    path = failover_dir / "models.yaml"
    path.write_text(path.read_text().replace("v2: {pool: gpu-small", "v2: {pool: cpu-general"))
    us = compile_dir(failover_dir).snapshots[US]
    cluster = unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster)
    assert cluster.lb_subset_config.subset_selectors[0].keys == ["version"]
    eds = cluster.eds_cluster_config.service_name
    assert eds == "model/embedder/us-east-1/failover/eu-west-1"
    cla = unpack(us, ENDPOINT, eds, endpoint_pb2.ClusterLoadAssignment)
    assert ports(cla) == {0: [(9001, US), (9002, US), (9101, US), (9102, US)],
                          1: [(9201, EU), (9202, EU), (9301, EU), (9302, EU)]}
    assert versions(cla) == {0: {("v1",), ("v2",)}, 1: {("v1",), ("v2",)}}


def test_a_policy_routing_only_some_versions_in_a_failover_region_narrows_that_hop(failover_dir: Path) -> None:
    """Where a (custom) policy routes fewer of a tenant's versions in a failover region than run there,
    the hop holds only those, so a version the policy keeps out of the region never reaches it."""
    cfg = load_config(failover_dir)
    acme = cfg.tenants["acme"]
    narrowed = acme.model_copy(update={"routes": {**acme.routes, EU: {**acme.routes[EU], "embedder": ["v1"]}}})
    cfg = cfg.model_copy(update={"tenants": {**cfg.tenants, "acme": narrowed}})
    us = Compiler().compile(CompileInputs(cfg, ENDPOINTS, JWKS)).snapshots[US]
    eds = unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster).eds_cluster_config.service_name
    assert eds == "model/embedder/us-east-1/failover/eu-west-1=v1"
    assert versions(unpack(us, ENDPOINT, eds, endpoint_pb2.ClusterLoadAssignment)) == {0: {("v1", "v2")}, 1: {("v1",)}}
    assert FAILOVER_HEADER not in _route_headers(us, "acme", "embedder/v2")


def test_the_failover_region_itself_has_nowhere_further_to_go(failover_dir: Path) -> None:
    eu = compile_dir(failover_dir).snapshots[EU]
    cluster = unpack(eu, CLUSTER, "tenant/acme/embedder/eu-west-1", cluster_pb2.Cluster)
    assert cluster.eds_cluster_config.service_name == "pool/gpu-small/eu-west-1"
    assert not [n for n in eu.of_type(ENDPOINT) if "/failover/" in n]


def test_us_only_tenant_reaches_only_us_endpoints(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    for name in [n for n in us.of_type(CLUSTER) if n.startswith("tenant/hooli/")]:
        cluster = unpack(us, CLUSTER, name, cluster_pb2.Cluster)
        cla = unpack(us, ENDPOINT, cluster.eds_cluster_config.service_name, endpoint_pb2.ClusterLoadAssignment)
        got = {lb.endpoint.address.socket_address.port_value for loc in cla.endpoints for lb in loc.lb_endpoints}
        assert got == {9101, 9102}, name  # cpu-general in us-east-1, nothing of the EU


def test_failover_in_the_config_must_stay_inside_allowed(cfg_dir: Path) -> None:
    from xds_server.config.errors import ConfigError

    edit_tenant(cfg_dir, "hooli", regions={"home": US, "allowed": [US], "failover": [EU]})
    with pytest.raises(ConfigError, match="may not fail over to eu-west-1"):
        load_config(cfg_dir)


def test_tenants_without_failover_are_unchanged_and_tenants_share_a_chain(cfg_dir: Path) -> None:
    before = compile_dir(cfg_dir).snapshots[US]
    # initech: the same chain as acme gets from the same edit; the two share one set per model.
    for tenant in ("acme", "initech"):
        data = yaml.safe_load((cfg_dir / "tenants" / f"{tenant}.yaml").read_text())
        edit_tenant(cfg_dir, tenant, regions={**data["regions"], "allowed": [US, EU], "failover": [EU]})
    after = compile_dir(cfg_dir).snapshots[US]
    # acme's own model was the only reader of the plain cpu-general own clusters: it now reads its
    # chain's (test_own_model_failover_*), so they go; everything else stays as it was (the pool's set
    # too: other tenants' catalog clusters read it).
    gone = {"own.cpu-general.0", "own.cpu-general.1"}
    for type_url in (CLUSTER, LISTENER, ENDPOINT):
        for name, res in before.of_type(type_url).items():
            if name in gone:
                assert name not in after.of_type(type_url), name
            elif not name.startswith(("tenant/acme/", "tenant/initech/")):
                assert after.of_type(type_url)[name].version == res.version, name
    new_sets = sorted(set(after.of_type(ENDPOINT)) - set(before.of_type(ENDPOINT)))
    versions_used = {c.eds_cluster_config.service_name
                     for n in after.of_type(CLUSTER) if n.startswith(("tenant/acme/", "tenant/initech/", "own."))
                     for c in [unpack(after, CLUSTER, n, cluster_pb2.Cluster)]}
    assert new_sets and all("/failover/eu-west-1" in n for n in new_sets)
    assert set(new_sets) <= versions_used  # one per model, shared, none left unread


def test_an_endpoint_change_reaches_the_failover_sets_and_equals_a_full_compile(failover_dir: Path) -> None:
    cfg = load_config(failover_dir)
    compiled = Compiler().compile(CompileInputs(cfg, ENDPOINTS, JWKS))
    # The EU's gpu-small pool loses a replica: the US failover sets lose it too.
    moved = EndpointDirectory({**ENDPOINTS.by_pool, (EU, "gpu-small"): (Endpoint("127.0.0.1", 9201),)})
    fast = Compiler.with_endpoints(compiled, cfg, moved)
    assert fast.version == Compiler().compile(CompileInputs(cfg, moved, JWKS)).version
    cla = unpack(fast.snapshots[US], ENDPOINT, "pool/gpu-small/us-east-1/failover/eu-west-1",
                 endpoint_pb2.ClusterLoadAssignment)
    assert ports(cla) == {0: [(9001, US), (9002, US)], 1: [(9201, EU)]}


def test_served_region_header_is_the_runtime_contract() -> None:
    from inference_images.runtime import gateway as contract

    assert SERVED_REGION_HEADER.startswith(contract.HEADER_PREFIX)  # a client can never set it (stripped)
    assert FAILOVER_HEADER.startswith(contract.HEADER_PREFIX)


# Tenants' own models (docs/design/0004, "Own models"): per-chain variants of the pool's hashed clusters.
ROUTER_CHAIN = {"own.cpu-general.0.failover.eu-west-1": 90, "own.cpu-general.1.failover.eu-west-1": 10}
ROUTER_SET = "pool/cpu-general/us-east-1/failover/eu-west-1"


def own_model_of(cfg_dir: Path, tenant: str, name: str, to: str) -> dict:  # type: ignore[type-arg]
    """`tenant`'s own model as its file declares it, for tenant `to`: its artifacts copied into `to`'s own
    folder of the config (a tenant's local artifacts must be there), the paths its file would write."""
    model = dict(yaml.safe_load((cfg_dir / "tenants" / f"{tenant}.yaml").read_text())["own_models"][name])
    versions = {}
    for version, ov in model["versions"].items():
        relative = os.path.relpath(os.path.join("tenants", ov["artifact"]), f"models/{tenant}")
        copy = cfg_dir / "models" / to / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cfg_dir / "tenants" / ov["artifact"], copy)
        versions[version] = {**ov, "artifact": f"../models/{to}/{relative}"}
    return {**model, "versions": versions}


def weighted(snapshot: Snapshot, tenant: str, route: str) -> dict[str, int]:
    vhost = unpack(snapshot, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", f"tenant/{tenant}",
                   route_pb2.RouteConfiguration).virtual_hosts[0]
    found = next(r for r in vhost.routes if r.name == route).route
    return {c.name: c.weight.value for c in found.weighted_clusters.clusters} if found.HasField("weighted_clusters") \
        else {found.cluster: 100}


def own_routes(snapshot: Snapshot, tenant: str, model: str) -> list[route_components_pb2.Route]:
    vhost = unpack(snapshot, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", f"tenant/{tenant}",
                   route_pb2.RouteConfiguration).virtual_hosts[0]
    return [r for r in vhost.routes if r.name == model or r.name.startswith(f"{model}/")]


def test_own_model_failover_route_names_the_chains_hashed_clusters(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    assert weighted(us, "acme", "ticket-router") == ROUTER_CHAIN
    # The pinned versions too, and every route names the failover regions for the gateway's 503.
    assert weighted(us, "acme", "ticket-router/2") == {"own.cpu-general.1.failover.eu-west-1": 100}
    for route in own_routes(us, "acme", "ticket-router"):
        assert {h.header.key: h.header.value for h in route.request_headers_to_add}[FAILOVER_HEADER] == EU
        assert len(route.route.hash_policy) == 2  # still hashed on tenant and model
    for name in ROUTER_CHAIN:
        cluster = unpack(us, CLUSTER, name, cluster_pb2.Cluster)
        assert cluster.eds_cluster_config.service_name == ROUTER_SET
        # The pool's ring hash with bounded load (one model's calls on one replica within a priority) ...
        assert cluster.lb_policy == cluster_pb2.Cluster.RING_HASH
        assert cluster.common_lb_config.consistent_hashing_lb_config.hash_balance_factor.value == 150
        # ... with catalog failover's served-region filter and whole-region ejection.
        options = http_protocol_options_pb2.HttpProtocolOptions()
        cluster.typed_extension_protocol_options[
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(options)
        assert [f.name for f in options.http_filters] == [
            "fairshare.served-region", "envoy.filters.http.upstream_codec"]
        assert cluster.outlier_detection.max_ejection_percent.value == 100


def test_own_model_failover_set_is_home_then_exactly_the_failover_regions_pool(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    cla = unpack(us, ENDPOINT, ROUTER_SET, endpoint_pb2.ClusterLoadAssignment)
    # cpu-general: 91xx in the US, 93xx in the EU; nothing of gpu-small, each endpoint tagged with its region.
    assert ports(cla) == {0: [(9101, US), (9102, US)], 1: [(9301, EU), (9302, EU)]}
    assert [loc.locality.region for loc in cla.endpoints] == [US, EU]
    # The failover region's own gateway serves the model from its pool alone: nowhere further to go.
    eu = compile_dir(failover_dir).snapshots[EU]
    assert weighted(eu, "acme", "ticket-router") == {"own.cpu-general.0": 90, "own.cpu-general.1": 10}
    assert not [n for n in eu.of_type(CLUSTER) if ".failover." in n]


def test_us_only_tenants_own_models_read_only_us_endpoints(failover_dir: Path) -> None:
    # globex (US only) brings a model on acme's pool: same pool, its own clusters, the US replicas alone.
    data = yaml.safe_load((failover_dir / "tenants" / "globex.yaml").read_text())
    data["own_models"]["router"] = own_model_of(failover_dir, "acme", "ticket-router", to="globex")
    (failover_dir / "tenants" / "globex.yaml").write_text(yaml.safe_dump(data))
    us = compile_dir(failover_dir).snapshots[US]
    for model in ("router", "intent"):
        for route in own_routes(us, "globex", model):
            assert FAILOVER_HEADER not in {h.header.key for h in route.request_headers_to_add}
            names = weighted(us, "globex", route.name)
            assert names and not [n for n in names if ".failover." in n], names
            for name in names:
                eds = unpack(us, CLUSTER, name, cluster_pb2.Cluster).eds_cluster_config.service_name
                cla = unpack(us, ENDPOINT, eds, endpoint_pb2.ClusterLoadAssignment)
                got = {port for by_priority in ports(cla).values() for port, _ in by_priority}
                assert got and got <= {9001, 9002, 9101, 9102}, (name, got)  # US gpu-small / cpu-general only
    assert weighted(us, "globex", "router") == {"own.cpu-general.0": 90, "own.cpu-general.1": 10}
    assert weighted(us, "acme", "ticket-router") == ROUTER_CHAIN


def test_own_clusters_of_tenants_without_failover_are_unchanged_byte_for_byte(cfg_dir: Path) -> None:
    data = yaml.safe_load((cfg_dir / "tenants" / "globex.yaml").read_text())
    data["own_models"]["router"] = own_model_of(cfg_dir, "acme", "ticket-router", to="globex")
    (cfg_dir / "tenants" / "globex.yaml").write_text(yaml.safe_dump(data))
    before = compile_dir(cfg_dir).snapshots[US]
    edit_tenant(cfg_dir, "acme", regions={"home": US, "allowed": [US, EU], "failover": [EU]})
    after = compile_dir(cfg_dir).snapshots[US]
    plain = sorted(n for t in (CLUSTER, ENDPOINT) for n in before.of_type(t) if n.startswith(("own.", "pool/")))
    assert plain == ["own.cpu-general.0", "own.cpu-general.1", "own.gpu-small.0",
                     "pool/cpu-general/us-east-1", "pool/gpu-small/us-east-1"]
    for type_url in (CLUSTER, ENDPOINT, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"):
        for name, res in before.of_type(type_url).items():
            if name == "tenant/acme" or name.startswith("tenant/acme/"):
                continue  # acme's own resources: it is the tenant that gained failover
            assert after.of_type(type_url)[name].packed.SerializeToString() == res.packed.SerializeToString(), name
    # acme's model moved to its chain's clusters: one variant per slot, one set, nothing per tenant; the
    # set is the one its catalog classifier (same pool) fails over with, and its embedder adds gpu-small's.
    added = sorted(n for t in (CLUSTER, ENDPOINT) for n in set(after.of_type(t)) - set(before.of_type(t))
                   if not n.startswith("tenant/"))
    assert added == sorted([ROUTER_SET, *ROUTER_CHAIN, "pool/gpu-small/us-east-1/failover/eu-west-1"])


def test_own_failover_clusters_grow_with_distinct_chains_not_tenants_or_models(failover_dir: Path) -> None:
    one = compile_dir(failover_dir).snapshots[US]
    # globex too: allowed in the EU, failing over there; its head on gpu-small and a router on cpu-general.
    data = yaml.safe_load((failover_dir / "tenants" / "globex.yaml").read_text())
    data["regions"] = {"home": US, "allowed": [US, EU], "failover": [EU]}
    data["models"] = {"classifier": {"split": {"v1": 100}}}  # v2 runs only in the US
    data["own_models"].update({f"r{i}": own_model_of(failover_dir, "acme", "ticket-router", to="globex")
                               for i in range(10)})
    (failover_dir / "tenants" / "globex.yaml").write_text(yaml.safe_dump(data))
    two = compile_dir(failover_dir).snapshots[US]
    chain_clusters = sorted(n for n in two.of_type(CLUSTER) if ".failover." in n and n.startswith("own."))
    assert chain_clusters == [*sorted(ROUTER_CHAIN), "own.gpu-small.0.failover.eu-west-1"]
    assert set(chain_clusters) - set(one.of_type(CLUSTER)) == {"own.gpu-small.0.failover.eu-west-1"}
    assert weighted(two, "globex", "r3") == weighted(two, "acme", "ticket-router") == ROUTER_CHAIN
    # No tenant on the plain own clusters any more in the US: they are gone; the pools' plain sets stay,
    # each pool's for the catalog clusters of tenants without failover.
    assert not [n for n in two.of_type(CLUSTER) if n.startswith("own.") and ".failover." not in n]
    assert sorted(n for n in two.of_type(ENDPOINT) if n.startswith("pool/") and "/failover/" not in n) == [
        "pool/cpu-general/us-east-1", "pool/gpu-small/us-east-1"]


def test_own_failover_sets_follow_an_endpoint_change_and_equal_a_full_compile(failover_dir: Path) -> None:
    cfg = load_config(failover_dir)
    compiled = Compiler().compile(CompileInputs(cfg, ENDPOINTS, JWKS))
    moved = EndpointDirectory({**ENDPOINTS.by_pool, (EU, "cpu-general"): (Endpoint("127.0.0.1", 9302),),
                               (US, "cpu-general"): ()})
    fast = Compiler.with_endpoints(compiled, cfg, moved)
    full = Compiler().compile(CompileInputs(cfg, moved, JWKS))
    assert fast.version == full.version
    for region, snap in full.snapshots.items():
        for type_url, by_name in snap.resources.items():
            assert {n: r.version for n, r in fast.snapshots[region].resources[type_url].items()} == \
                {n: r.version for n, r in by_name.items()}, (region, type_url)
    cla = unpack(fast.snapshots[US], ENDPOINT, ROUTER_SET, endpoint_pb2.ClusterLoadAssignment)
    assert ports(cla) == {1: [(9302, EU)]}


def test_envoy_accepts_own_failover_clusters(failover_dir: Path, tmp_path: Path) -> None:
    from xds_server.auth.keys import SigningKey
    from xds_server.envoy.process import EnvoyError, find_envoy
    from xds_server.envoy.validate import EnvoyValidator

    try:
        validator = EnvoyValidator(find_envoy())
    except EnvoyError as err:
        pytest.skip(str(err))
    compiled = Compiler().compile(CompileInputs(load_config(failover_dir), ENDPOINTS,
                                                SigningKey.load_or_create(tmp_path).jwks()))
    assert ROUTER_SET in compiled.snapshots[US].of_type(ENDPOINT)
    for region, snapshot in compiled.snapshots.items():
        assert validator.check(None, snapshot) is None, region
