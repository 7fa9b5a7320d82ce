"""Failover inside residency (docs/design/0004): a tenant's cluster reads a set with priorities from
exactly its failover regions where the policy routes that version, and nothing else changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, Endpoint, EndpointDirectory
from xds_server.compiler.failover import FAILOVER_HEADER, METADATA_NAMESPACE, SERVED_REGION_HEADER
from xds_server.config import load_config
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, Snapshot

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
JWKS = '{"keys": []}'
US, EU = "us-east-1", "eu-west-1"
ENDPOINTS = EndpointDirectory({
    (region, pool): (Endpoint("127.0.0.1", base + 1), Endpoint("127.0.0.1", base + 2))
    for (region, pool), base in {(US, "gpu-small"): 9000, (US, "cpu-general"): 9100,
                                 (EU, "gpu-small"): 9200, (EU, "cpu-general"): 9300}.items()
})


def unpack(snapshot: Snapshot, type_url: str, name: str, message):  # type: ignore[no-untyped-def]
    msg = message()
    snapshot.of_type(type_url)[name].packed.Unpack(msg)
    return msg


def edit_tenant(cfg_dir: Path, tenant: str, **fields: object) -> None:
    path = cfg_dir / "tenants" / f"{tenant}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(fields)
    path.write_text(yaml.safe_dump(data))


def compile_dir(cfg_dir: Path, endpoints: EndpointDirectory = ENDPOINTS) -> CompiledPlatform:
    return Compiler().compile(CompileInputs(load_config(cfg_dir), endpoints, JWKS))


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    shutil.copytree(REPO_CONFIG, tmp_path / "config")
    return tmp_path / "config"


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


def test_failover_tenant_reads_a_set_with_priorities_from_exactly_its_failover_regions(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    cluster = unpack(us, CLUSTER, "tenant/acme/embedder/v1/us-east-1", cluster_pb2.Cluster)
    eds = cluster.eds_cluster_config.service_name
    assert eds == "model/embedder/v1/us-east-1/failover/eu-west-1"
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


def test_version_not_routed_in_the_failover_region_does_not_fail_over(failover_dir: Path) -> None:
    us = compile_dir(failover_dir).snapshots[US]
    # classifier v2 is deployed only in the US: policy routes it nowhere else, so no EU endpoint.
    cluster = unpack(us, CLUSTER, "tenant/acme/classifier/v2/us-east-1", cluster_pb2.Cluster)
    assert cluster.eds_cluster_config.service_name == "model/classifier/v2/us-east-1"
    assert not cluster.typed_extension_protocol_options
    assert "model/classifier/v2/us-east-1/failover/eu-west-1" not in us.of_type(ENDPOINT)


def test_the_failover_region_itself_has_nowhere_further_to_go(failover_dir: Path) -> None:
    eu = compile_dir(failover_dir).snapshots[EU]
    cluster = unpack(eu, CLUSTER, "tenant/acme/embedder/v1/eu-west-1", cluster_pb2.Cluster)
    assert cluster.eds_cluster_config.service_name == "model/embedder/v1/eu-west-1"
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
    # initech: the same chain as acme gets from the same edit; the two share one set per version.
    for tenant in ("acme", "initech"):
        data = yaml.safe_load((cfg_dir / "tenants" / f"{tenant}.yaml").read_text())
        edit_tenant(cfg_dir, tenant, regions={**data["regions"], "allowed": [US, EU], "failover": [EU]})
    after = compile_dir(cfg_dir).snapshots[US]
    for type_url in (CLUSTER, LISTENER):
        for name, res in before.of_type(type_url).items():
            if name.startswith(("tenant/acme/", "tenant/initech/")):
                continue
            assert after.of_type(type_url)[name].version == res.version, name
    for name, res in before.of_type(ENDPOINT).items():
        assert after.of_type(ENDPOINT)[name].version == res.version, name
    new_sets = sorted(set(after.of_type(ENDPOINT)) - set(before.of_type(ENDPOINT)))
    versions_used = {c.eds_cluster_config.service_name
                     for n in after.of_type(CLUSTER) if n.startswith(("tenant/acme/", "tenant/initech/"))
                     for c in [unpack(after, CLUSTER, n, cluster_pb2.Cluster)]}
    assert new_sets and all("/failover/eu-west-1" in n for n in new_sets)
    assert set(new_sets) <= versions_used  # one per version, shared, none left unread


def test_an_endpoint_change_reaches_the_failover_sets_and_equals_a_full_compile(failover_dir: Path) -> None:
    cfg = load_config(failover_dir)
    compiled = Compiler().compile(CompileInputs(cfg, ENDPOINTS, JWKS))
    # The EU's gpu-small pool loses a replica: the US failover sets lose it too.
    moved = EndpointDirectory({**ENDPOINTS.by_pool, (EU, "gpu-small"): (Endpoint("127.0.0.1", 9201),)})
    fast = Compiler.with_endpoints(compiled, cfg, moved)
    assert fast.version == Compiler().compile(CompileInputs(cfg, moved, JWKS)).version
    cla = unpack(fast.snapshots[US], ENDPOINT, "model/embedder/v1/us-east-1/failover/eu-west-1",
                 endpoint_pb2.ClusterLoadAssignment)
    assert ports(cla) == {0: [(9001, US), (9002, US)], 1: [(9201, EU)]}


def test_served_region_header_is_the_runtime_contract() -> None:
    from inference_images.runtime import gateway as contract

    assert SERVED_REGION_HEADER.startswith(contract.HEADER_PREFIX)  # a client can never set it (stripped)
    assert FAILOVER_HEADER.startswith(contract.HEADER_PREFIX)
