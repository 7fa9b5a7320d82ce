"""Tenants' own models in the compiled snapshot (docs/design/0003): shared hashed clusters per pool, the
tenant's routes carrying what to load, no name visible to another tenant, and Envoy accepting it all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from xds_server.auth.keys import SigningKey
from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, Endpoint, EndpointDirectory
from xds_server.compiler import own as own_mod
from xds_server.config import load_config
from xds_server.snapshot import CLUSTER, ENDPOINT, ROUTE, Snapshot

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
US, EU = "us-east-1", "eu-west-1"
ENDPOINTS = EndpointDirectory({
    (US, "cpu-general"): (Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9002)),
    (US, "gpu-small"): (Endpoint("127.0.0.1", 9003), Endpoint("127.0.0.1", 9004)),
    (EU, "cpu-general"): (Endpoint("127.0.0.1", 9005),),
})


def compile_dir(directory: Path, jwks: str = '{"keys": []}') -> CompiledPlatform:
    return Compiler().compile(CompileInputs(load_config(directory), ENDPOINTS, jwks))


def unpack(snapshot: Snapshot, type_url: str, name: str, message):  # type: ignore[no-untyped-def]
    msg = message()
    snapshot.of_type(type_url)[name].packed.Unpack(msg)
    return msg


def vhost(snapshot: Snapshot, tenant: str) -> route_pb2.VirtualHost:
    return unpack(snapshot, ROUTE, f"tenant/{tenant}", route_pb2.RouteConfiguration).virtual_hosts[0]


def headers(options) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {h.header.key: h.header.value for h in options}


def add_own_models(cfg_dir: Path, tenant: str, models: dict[str, dict]) -> None:  # type: ignore[type-arg]
    path = cfg_dir / "tenants" / f"{tenant}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("own_models", {}).update(models)
    path.write_text(yaml.safe_dump(spec))


def _router_digests() -> dict[str, str]:
    """The digests acme's tenant file declares (bench/example_models/train.py writes both)."""
    spec = yaml.safe_load((REPO_CONFIG / "tenants" / "acme.yaml").read_text())
    return {v: d["sha256"] for v, d in spec["own_models"]["ticket-router"]["versions"].items()}


ROUTER_SHA = _router_digests()


def router_copy(cfg_dir: Path, tenant: str, n_versions: int = 1) -> dict:  # type: ignore[type-arg]
    """An own model of `tenant` like acme's ticket-router version 1, with n versions of the same bytes, in
    the tenant's own folder of the config (where its local artifacts must be)."""
    artifact = cfg_dir / "models" / tenant / "router-copy" / "model.onnx"
    if not artifact.exists():
        artifact.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_CONFIG / "models/acme/ticket-router/1/model.onnx", artifact)
    sha = ROUTER_SHA["1"]
    versions = {str(i): {"artifact": str(artifact), "sha256": sha} for i in range(1, n_versions + 1)}
    split = {v: 100 // n_versions + (100 % n_versions if v == "1" else 0) for v in versions}
    return {"format": "onnx", "pool": "cpu-general", "versions": versions, "split": split}


def test_own_model_route_splits_over_the_pools_hashed_clusters_with_what_to_load() -> None:
    us = compile_dir(REPO_CONFIG).snapshots[US]
    routes = {r.name: r for r in vhost(us, "acme").routes}
    split = routes["ticket-router"]
    assert split.match.path_separated_prefix == "/v2/models/ticket-router"
    assert headers(split.request_headers_to_add) == {
        "x-fairshare-model-owner": "acme", "x-fairshare-model-format": "onnx", "x-fairshare-model-versions": "1,2"}
    weighted = {c.name: c for c in split.route.weighted_clusters.clusters}
    assert {n: c.weight.value for n, c in weighted.items()} == {"own.cpu-general.0": 90, "own.cpu-general.1": 10}
    v1 = headers(weighted["own.cpu-general.0"].request_headers_to_add)
    assert v1 == {
        "x-fairshare-model-version": "1",
        "x-fairshare-model-artifact": str(REPO_CONFIG / "models/acme/ticket-router/1/model.onnx"),
        "x-fairshare-model-sha256": ROUTER_SHA["1"],
        # Measured by the config load (a local file): the runtime refuses a file of another size unread.
        "x-fairshare-model-bytes": str((REPO_CONFIG / "models/acme/ticket-router/1/model.onnx").stat().st_size),
    }
    assert headers(weighted["own.cpu-general.1"].request_headers_to_add)["x-fairshare-model-version"] == "2"
    # An explicit version pins it, with every header on the route.
    pinned = routes["ticket-router/2"]
    assert pinned.match.path_separated_prefix == "/v2/models/ticket-router/versions/2"
    assert headers(pinned.request_headers_to_add)["x-fairshare-model-sha256"] == ROUTER_SHA["2"]
    assert headers(pinned.request_headers_to_add)["x-fairshare-model-owner"] == "acme"
    # The own routes come before the refusals, so /v2/models/ticket-router is not "unknown model".
    names = [r.name for r in vhost(us, "acme").routes]
    assert names.index("ticket-router") < names.index("unknown-model")


def test_route_hashes_on_tenant_and_the_model_name_from_the_path() -> None:
    us = compile_dir(REPO_CONFIG).snapshots[US]
    for route in (r for r in vhost(us, "acme").routes if r.name.startswith("ticket-router")):
        tenant, path = route.route.hash_policy
        assert tenant.header.header_name == "x-fairshare-tenant"
        assert path.header.header_name == ":path"
        assert path.header.regex_rewrite.pattern.regex == r"^/v2/models/([^/]+).*$"
        assert path.header.regex_rewrite.substitution == r"\1"
    # Catalog models keep least-request, no hashing.
    catalog = next(r for r in vhost(us, "acme").routes if r.name == "embedder")
    assert not catalog.route.hash_policy
    tenant_cluster = unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster)
    assert tenant_cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST


def test_head_route_names_its_base() -> None:
    us = compile_dir(REPO_CONFIG).snapshots[US]
    intent = next(r for r in vhost(us, "globex").routes if r.name == "intent")
    assert headers(intent.request_headers_to_add) == {
        "x-fairshare-model-owner": "globex", "x-fairshare-model-format": "head",
        "x-fairshare-model-versions": "1", "x-fairshare-model-base": "embedder/v1"}
    assert [c.name for c in intent.route.weighted_clusters.clusters] == ["own.gpu-small.0"]


def test_shared_clusters_ring_hash_with_bounded_load_over_the_pools_endpoints() -> None:
    us = compile_dir(REPO_CONFIG).snapshots[US]
    cluster = unpack(us, CLUSTER, "own.cpu-general.0", cluster_pb2.Cluster)
    assert cluster.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert cluster.common_lb_config.consistent_hashing_lb_config.hash_balance_factor.value == 150
    assert cluster.eds_cluster_config.service_name == "pool/cpu-general/us-east-1"
    eds = unpack(us, ENDPOINT, "pool/cpu-general/us-east-1", endpoint_pb2.ClusterLoadAssignment)
    ports = sorted(e.endpoint.address.socket_address.port_value for e in eds.endpoints[0].lb_endpoints)
    assert ports == [9001, 9002]
    # Slots: the longest live split on the pool (ticket-router's 90/10) -> 2 on cpu-general, 1 on gpu-small.
    assert sorted(n for n in us.of_type(CLUSTER) if n.startswith("own.")) == [
        "own.cpu-general.0", "own.cpu-general.1", "own.gpu-small.0"]


def test_cluster_count_does_not_grow_with_own_models(cfg_dir: Path) -> None:
    before = compile_dir(cfg_dir).snapshots[US]
    add_own_models(cfg_dir, "acme", {f"m{i}": router_copy(cfg_dir, "acme", 1 + i % 2) for i in range(40)})
    add_own_models(cfg_dir, "globex", {f"g{i}": router_copy(cfg_dir, "globex") for i in range(15)})
    after = compile_dir(cfg_dir).snapshots[US]
    assert set(after.of_type(CLUSTER)) == set(before.of_type(CLUSTER))
    assert set(after.of_type(ENDPOINT)) == set(before.of_type(ENDPOINT))
    assert sum(1 for r in vhost(after, "acme").routes if r.name.startswith("m")) >= 40
    # A three-way split needs a third slot on its pool, and only that.
    add_own_models(cfg_dir, "acme", {"three": router_copy(cfg_dir, "acme", 3)})
    three = compile_dir(cfg_dir).snapshots[US]
    assert set(three.of_type(CLUSTER)) - set(before.of_type(CLUSTER)) == {"own.cpu-general.2"}


def test_another_tenant_cannot_see_an_own_model(cfg_dir: Path) -> None:
    us = compile_dir(REPO_CONFIG).snapshots[US]
    for other in ("globex", "hooli"):
        routes = vhost(us, other).routes
        assert not [r for r in routes if "ticket-router" in r.name or "ticket-router" in r.match.path_separated_prefix]
    # ... so /v2/models/ticket-router falls to the same 404 as any unknown model, not a 403 that names it.
    unknown = next(r for r in vhost(us, "hooli").routes if r.name == "unknown-model")
    assert unknown.direct_response.status == 404 and "ticket-router" not in unknown.direct_response.body.inline_string


def test_own_models_only_where_the_tenant_is_allowed() -> None:
    compiled = compile_dir(REPO_CONFIG)
    eu = compiled.snapshots[EU]
    # acme allows both regions: its model is routed in each; globex is US-only: nothing of it in the EU,
    # and no gpu-small own cluster there (no own model is routed on it in the EU).
    assert any(r.name == "ticket-router" for r in vhost(eu, "acme").routes)
    assert "tenant/globex" not in eu.of_type(ROUTE)
    assert "own.gpu-small.0" not in eu.of_type(CLUSTER)


def test_removing_own_models_removes_their_routes_and_clusters(cfg_dir: Path) -> None:
    for tenant in ("acme", "globex"):
        path = cfg_dir / "tenants" / f"{tenant}.yaml"
        spec = yaml.safe_load(path.read_text())
        spec.pop("own_models")
        path.write_text(yaml.safe_dump(spec))
    us = compile_dir(cfg_dir).snapshots[US]
    assert not [n for n in us.of_type(CLUSTER) if n.startswith("own.")]
    # The pools' sets stay for the catalog clusters, their only readers now.
    read = {unpack(us, CLUSTER, n, cluster_pb2.Cluster).eds_cluster_config.service_name for n in us.of_type(CLUSTER)}
    assert {n for n in us.of_type(ENDPOINT) if n.startswith("pool/")} <= read
    assert not [r for r in vhost(us, "acme").routes if r.name.startswith("ticket-router")]


def test_own_routes_count_against_the_tenants_rate_limits_like_catalog_models() -> None:
    us = compile_dir(REPO_CONFIG).snapshots[US]
    routes = {r.name: r for r in vhost(us, "acme").routes}
    meta = routes["ticket-router"].metadata.filter_metadata["fairshare"]
    assert dict(meta) == {"model": "ticket-router"}
    assert routes["embedder"].metadata.filter_metadata["fairshare"]["model"] == "embedder"


def test_envoy_accepts_the_compiled_own_model_config(tmp_path: Path) -> None:
    from xds_server.envoy.process import EnvoyError, find_envoy
    from xds_server.envoy.validate import EnvoyValidator

    try:
        validator = EnvoyValidator(find_envoy())
    except EnvoyError as err:
        pytest.skip(str(err))
    compiled = compile_dir(REPO_CONFIG, SigningKey.load_or_create(tmp_path).jwks())
    for region, snapshot in compiled.snapshots.items():
        assert validator.check(None, snapshot) is None, region
    assert own_mod.HASH_BALANCE_FACTOR > 100  # bounded load: Envoy requires a factor of at least 100
