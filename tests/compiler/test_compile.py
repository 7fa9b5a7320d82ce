"""The compiler's promises: per-tenant resources, splits and caps from the spec, stable names, and an
edit to one tenant touching only that tenant's resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2

from xds_server.compiler import CompiledPlatform, CompileInputs, Compiler, Endpoint, EndpointDirectory
from xds_server.config import load_config
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE, Snapshot

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
JWKS = '{"keys": []}'


def compile_dir(directory: Path, compiler: Compiler | None = None) -> CompiledPlatform:
    eps = EndpointDirectory({("us-east-1", "cpu-general"): (Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9002))})
    return (compiler or Compiler()).compile(CompileInputs(load_config(directory), eps, JWKS))


def unpack(snapshot: Snapshot, type_url: str, name: str, message):  # type: ignore[no-untyped-def]
    msg = message()
    snapshot.of_type(type_url)[name].packed.Unpack(msg)
    return msg


def test_tenant_gets_one_cluster_per_model_with_circuit_breakers_from_quota() -> None:
    us = compile_dir(REPO_CONFIG).snapshots["us-east-1"]
    acme_clusters = sorted(n for n in us.of_type(CLUSTER) if n.startswith("tenant/acme/"))
    # acme's embedder is a 90/10 split over two versions: still one cluster, so one concurrency cap.
    assert acme_clusters == ["tenant/acme/classifier/us-east-1", "tenant/acme/embedder/us-east-1"]
    cluster = unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster)
    t = cluster.circuit_breakers.thresholds[0]
    assert (t.max_requests.value, t.max_pending_requests.value, t.max_connections.value) == (32, 32, 32)
    # Both versions run on gpu-small: every replica of the pool serves both, so the cluster reads the
    # pool's set and needs no subsets (they cost Envoy ~4x per cluster on each endpoint change).
    assert cluster.eds_cluster_config.service_name == "pool/gpu-small/us-east-1"
    assert not cluster.HasField("lb_subset_config")
    hooli = unpack(us, CLUSTER, "tenant/hooli/classifier/us-east-1", cluster_pb2.Cluster)
    assert hooli.circuit_breakers.thresholds[0].max_requests.value == 4  # free tier default


def _version_of(match) -> str:  # type: ignore[no-untyped-def]
    return str(match.filter_metadata["envoy.lb"].fields["version"].string_value)


def _entries(snapshot: Snapshot, tenant: str, route: str) -> set[tuple[str, int, str, str]]:
    """(cluster, weight, the subset it picks or "", the version header) of each entry of a route."""
    vhost = unpack(snapshot, ROUTE, f"tenant/{tenant}", route_pb2.RouteConfiguration).virtual_hosts[0]
    action = next(r for r in vhost.routes if r.name == route).route
    entries = action.weighted_clusters.clusters or [
        route_components_pb2.WeightedCluster.ClusterWeight(name=action.cluster, weight={"value": 100},
                                                            metadata_match=action.metadata_match)]
    pinned = {h.header.key: h.header.value for r in vhost.routes if r.name == route for h in r.request_headers_to_add}
    header = "x-fairshare-model-version"
    return {(c.name, c.weight.value, _version_of(c.metadata_match) if c.HasField("metadata_match") else "",
             {**pinned, **{h.header.key: h.header.value for h in c.request_headers_to_add}}[header])
            for c in entries}


def test_split_becomes_weighted_entries_on_one_cluster_and_rules_become_headers() -> None:
    us = compile_dir(REPO_CONFIG).snapshots["us-east-1"]
    rc = unpack(us, ROUTE, "tenant/acme", route_pb2.RouteConfiguration)
    vhost = rc.virtual_hosts[0]
    # One cluster named once per version, each entry telling the runtime which version to run.
    assert _entries(us, "acme", "embedder") == {
        ("tenant/acme/embedder/us-east-1", 90, "", "v1"), ("tenant/acme/embedder/us-east-1", 10, "", "v2")}
    pinned = next(r for r in vhost.routes if r.name == "embedder/v2")
    assert pinned.match.path_separated_prefix == "/v2/models/embedder/versions/v2"
    assert _entries(us, "acme", "embedder/v2") == {("tenant/acme/embedder/us-east-1", 100, "", "v2")}
    headers = {h.header.key: h.header.value for h in vhost.request_headers_to_add}
    assert headers["x-fairshare-region"] == "us-east-1"
    assert headers["x-fairshare-weight"] == "4"
    # acme is a payment tenant: policy/pii adds iban and national_id to what its file names
    assert headers["x-fairshare-pii-redact"] == "email,iban,ip_address,national_id,phone"
    assert headers["x-fairshare-pii-block"] == "credit_card"
    forbidden = [r for r in unpack(us, ROUTE, "tenant/globex", route_pb2.RouteConfiguration).virtual_hosts[0].routes
                 if r.name == "forbidden/embedder"]
    assert forbidden and forbidden[0].direct_response.status == 403


def test_catalog_routes_name_the_versions_the_tenant_is_granted() -> None:
    # The runtime lists these in the model's metadata, never the other versions the replica serves.
    us = compile_dir(REPO_CONFIG).snapshots["us-east-1"]

    def granted(tenant: str, route: str) -> str:
        vhost = unpack(us, ROUTE, f"tenant/{tenant}", route_pb2.RouteConfiguration).virtual_hosts[0]
        headers = {h.header.key: h.header.value for r in vhost.routes if r.name == route
                   for h in r.request_headers_to_add}
        return headers["x-fairshare-model-versions"]

    assert granted("acme", "classifier") == "v1" and granted("acme", "classifier/v1") == "v1"
    assert granted("hooli", "classifier") == "v2"
    assert granted("acme", "embedder") == "v1,v2" and granted("acme", "embedder/v2") == "v1,v2"


def test_residency_a_region_holds_only_the_tenants_allowed_there() -> None:
    eu = compile_dir(REPO_CONFIG).snapshots["eu-west-1"]
    # globex is US-only: nothing of it exists in the EU snapshot, so no route can send its data there.
    assert not [n for t in (CLUSTER, ROUTE, SCOPED_ROUTE) for n in eu.of_type(t) if n.startswith("tenant/globex")]
    scope = unpack(eu, SCOPED_ROUTE, "tenant/initech", scoped_route_pb2.ScopedRouteConfiguration)
    assert scope.key.fragments[0].string_key == "initech"
    # No EU route of any tenant names a US-only model version.
    versions = {(route.name.split("/")[0], h.header.value)
                for name in eu.of_type(ROUTE)
                for route in unpack(eu, ROUTE, name, route_pb2.RouteConfiguration).virtual_hosts[0].routes
                for h in [*route.request_headers_to_add,
                          *(h for c in route.route.weighted_clusters.clusters for h in c.request_headers_to_add)]
                if h.header.key == "x-fairshare-model-version"}
    assert ("classifier", "v1") in versions and ("classifier", "v2") not in versions
    assert not [n for n in eu.of_type(ENDPOINT) if n.startswith("model/classifier/")]


def _replicas(snapshot: Snapshot, name: str) -> dict[str, tuple[str, ...]]:
    cla = unpack(snapshot, ENDPOINT, name, endpoint_pb2.ClusterLoadAssignment)
    return {f"{lb.endpoint.address.socket_address.address}:{lb.endpoint.address.socket_address.port_value}":
            tuple(v.string_value for v in lb.metadata.filter_metadata["envoy.lb"].fields["version"].list_value.values)
            for loc in cla.endpoints for lb in loc.lb_endpoints}


def test_endpoints_are_shared_per_pool_when_a_models_versions_share_one() -> None:
    us = compile_dir(REPO_CONFIG).snapshots["us-east-1"]
    # Every model's versions run on one pool here: no per-version or per-model sets, the pools' alone
    # (read by the catalog clusters and the own-model clusters alike).
    assert not [n for n in us.of_type(ENDPOINT) if n.startswith("model/")]
    assert sorted(n for n in us.of_type(ENDPOINT) if n.startswith("pool/")) == [
        "pool/cpu-general/us-east-1", "pool/gpu-small/us-east-1"]


def test_versions_on_different_pools_are_subsets_of_the_one_cluster(cfg_dir: Path) -> None:
    """embedder v2 moved to cpu-general: acme's one embedder cluster reads the model's set, each replica
    tagged with the versions it runs, and each entry of the split (and each pinned route) picks its
    version's subset; a version without replicas gets a 503, never another version's replicas."""
    path = cfg_dir / "models.yaml"
    path.write_text(path.read_text().replace("v2: {pool: gpu-small", "v2: {pool: cpu-general"))
    us = compile_dir(cfg_dir).snapshots["us-east-1"]
    cluster = unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster)
    assert cluster.eds_cluster_config.service_name == "model/embedder/us-east-1"
    subsets = cluster.lb_subset_config
    assert [list(s.keys) for s in subsets.subset_selectors] == [["version"]]
    assert subsets.fallback_policy == cluster_pb2.Cluster.LbSubsetConfig.NO_FALLBACK and subsets.list_as_any
    # cpu-general (9001, 9002 here) runs embedder v2 only; gpu-small has no replicas in this directory.
    assert _replicas(us, "model/embedder/us-east-1") == {"127.0.0.1:9001": ("v2",), "127.0.0.1:9002": ("v2",)}
    assert _entries(us, "acme", "embedder") == {
        ("tenant/acme/embedder/us-east-1", 90, "v1", "v1"), ("tenant/acme/embedder/us-east-1", 10, "v2", "v2")}
    assert _entries(us, "acme", "embedder/v2") == {("tenant/acme/embedder/us-east-1", 100, "v2", "v2")}
    # classifier's versions still share cpu-general: its clusters read the pool's set, no subsets.
    classifier = unpack(us, CLUSTER, "tenant/acme/classifier/us-east-1", cluster_pb2.Cluster)
    assert classifier.eds_cluster_config.service_name == "pool/cpu-general/us-east-1"
    assert not classifier.HasField("lb_subset_config")


def test_replicas_running_several_versions_appear_once_with_all_of_them(cfg_dir: Path) -> None:
    path = cfg_dir / "models.yaml"
    path.write_text(path.read_text().replace("v2: {pool: gpu-small", "v2: {pool: cpu-general"))
    eps = EndpointDirectory({("us-east-1", "cpu-general"): (Endpoint("127.0.0.1", 9001),),
                             ("us-east-1", "gpu-small"): (Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9101))})
    us = Compiler().compile(CompileInputs(load_config(cfg_dir), eps, JWKS)).snapshots["us-east-1"]
    # One host per address in the cluster (Envoy keys hosts by address), carrying every version it runs.
    assert _replicas(us, "model/embedder/us-east-1") == {"127.0.0.1:9001": ("v1", "v2"), "127.0.0.1:9101": ("v1",)}


def test_compile_is_deterministic() -> None:
    a, b = compile_dir(REPO_CONFIG), compile_dir(REPO_CONFIG)
    assert a.version == b.version
    assert {r: s.version for r, s in a.snapshots.items()} == {r: s.version for r, s in b.snapshots.items()}


def test_editing_one_tenant_changes_only_its_resources(cfg_dir: Path) -> None:
    compiler = Compiler()
    before = compile_dir(cfg_dir, compiler).snapshots["us-east-1"]
    path = cfg_dir / "tenants" / "acme.yaml"
    path.write_text(path.read_text().replace("{v1: 90, v2: 10}", "{v1: 50, v2: 50}"))
    after = compile_dir(cfg_dir, compiler).snapshots["us-east-1"]
    assert before.version != after.version
    changed = {
        (t, n)
        for t in (LISTENER, CLUSTER, ENDPOINT, SCOPED_ROUTE, ROUTE)
        for n in set(before.of_type(t)) | set(after.of_type(t))
        if (before.of_type(t).get(n) is None) != (after.of_type(t).get(n) is None)
        or (before.of_type(t).get(n) and after.of_type(t).get(n)
            and before.of_type(t)[n].version != after.of_type(t)[n].version)
    }
    assert changed == {(ROUTE, "tenant/acme")}


def test_adding_a_version_to_a_split_moves_routes_not_clusters(cfg_dir: Path) -> None:
    """A canary starting (or ending) changes the tenant's routes only: its cluster, its connections and
    its outlier state stay, since versions are subsets of one cluster."""
    compiler = Compiler()
    before = compile_dir(cfg_dir, compiler).snapshots["us-east-1"]
    path = cfg_dir / "tenants" / "hooli.yaml"
    path.write_text(path.read_text().replace("{v2: 100}", "{v1: 30, v2: 70}"))
    after = compile_dir(cfg_dir, compiler).snapshots["us-east-1"]
    assert _differences(before, after) == {(ROUTE, "tenant/hooli"): "changed"}
    assert _entries(after, "hooli", "classifier") == {
        ("tenant/hooli/classifier/us-east-1", 30, "", "v1"), ("tenant/hooli/classifier/us-east-1", 70, "", "v2")}


def _differences(before: Snapshot, after: Snapshot) -> dict[tuple[str, str], str]:
    """Every resource added, removed or changed between two snapshots."""
    out: dict[tuple[str, str], str] = {}
    for t in set(before.resources) | set(after.resources):
        old, new = before.of_type(t), after.of_type(t)
        for n in set(old) | set(new):
            if n not in new:
                out[(t, n)] = "removed"
            elif n not in old:
                out[(t, n)] = "added"
            elif old[n].version != new[n].version:
                out[(t, n)] = "changed"
    return out


@pytest.mark.parametrize("tenant", ["hooli", "initech", "globex"])
def test_offboarding_or_adding_one_tenant_touches_only_its_resources_and_equals_a_full_compile(
        cfg_dir: Path, tenant: str) -> None:
    """A tenant leaving (or coming back) removes (or adds) its own resources and nothing else: its scope,
    routes and clusters, and a shared own-model cluster and endpoint set only where it was their last
    user (globex). The memoised compile after the change equals a fresh compiler's full compile."""
    compiler = Compiler()
    before = compile_dir(cfg_dir, compiler)
    path = cfg_dir / "tenants" / f"{tenant}.yaml"
    spec = path.read_text()
    path.write_text(spec + "\noffboard: true\n")
    gone = compile_dir(cfg_dir, compiler)
    assert gone.version != before.version
    assert tenant not in gone.ratelimits.tenants and tenant in before.ratelimits.tenants
    full = compile_dir(cfg_dir)
    assert {r: s.version for r, s in gone.snapshots.items()} == {r: s.version for r, s in full.snapshots.items()}
    assert gone.ratelimits == full.ratelimits
    removed: dict[tuple[str, str], str] = {}
    for region in before.snapshots:
        changes = _differences(before.snapshots[region], gone.snapshots[region])
        assert set(changes.values()) <= {"removed"}, changes
        removed.update(changes)
    names = {n for _, n in removed}
    assert {f"tenant/{tenant}"} <= names  # its scope and routes
    assert all(n.startswith(f"tenant/{tenant}") or (tenant == "globex" and "gpu-small" in n) for n in names), names
    assert any(t == CLUSTER and n.startswith(f"tenant/{tenant}/") for t, n in removed)

    path.write_text(spec)  # onboarded again: exactly the config it left
    back = compile_dir(cfg_dir, compiler)
    assert {r: s.version for r, s in back.snapshots.items()} == {r: s.version for r, s in before.snapshots.items()}
    assert back.version == before.version and back.ratelimits == before.ratelimits

def test_versions_are_identical_across_processes(tmp_path: Path) -> None:
    """A control-plane restart must not change any resource's version, or Envoy would rebuild (and drain)
    its listener for nothing. Hash seeds differ between processes; serialisation must not depend on them."""
    import os
    import subprocess
    import sys

    script = (
        "from xds_server.compiler import Compiler, CompileInputs, EndpointDirectory\n"
        "from xds_server.config import load_config\n"
        f"p = Compiler().compile(CompileInputs(load_config({str(REPO_CONFIG)!r}), EndpointDirectory(), {JWKS!r}))\n"
        "print(p.version, *(f'{r}={s.version}' for r, s in p.snapshots.items()))\n"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1, outputs


def test_an_endpoint_change_rebuilds_only_endpoint_sets_and_equals_a_full_compile() -> None:
    cfg = load_config(REPO_CONFIG)
    before = EndpointDirectory({("us-east-1", "cpu-general"): (Endpoint("127.0.0.1", 9001),)})
    after = EndpointDirectory({("us-east-1", "cpu-general"): (Endpoint("127.0.0.1", 9001), Endpoint("10.0.0.7", 9001))})
    compiled = Compiler().compile(CompileInputs(cfg, before, JWKS))
    fast = Compiler.with_endpoints(compiled, cfg, after)
    full = Compiler().compile(CompileInputs(cfg, after, JWKS))
    assert fast.version == full.version != compiled.version
    for region, snap in full.snapshots.items():
        assert fast.snapshots[region].version == snap.version
        changed = {(t, n) for t, by_name in snap.resources.items() for n, r in by_name.items()
                   if compiled.snapshots[region].of_type(t).get(n) != r}
        assert all(t == ENDPOINT for t, _ in changed)
        assert bool(changed) == (region == "us-east-1")


def test_envoy_accepts_one_cluster_named_once_per_version_with_and_without_subsets(cfg_dir: Path) -> None:
    """Envoy's own validation of the compiled config: weighted entries naming one cluster twice, with
    ClusterWeight.metadata_match (versions on different pools) and without (versions sharing one)."""
    from xds_server.auth.keys import SigningKey
    from xds_server.envoy.process import EnvoyError, find_envoy
    from xds_server.envoy.validate import EnvoyValidator

    try:
        validator = EnvoyValidator(find_envoy())
    except EnvoyError as err:
        pytest.skip(str(err))
    path = cfg_dir / "models.yaml"
    path.write_text(path.read_text().replace("v2: {pool: gpu-small", "v2: {pool: cpu-general"))
    eps = EndpointDirectory({("us-east-1", "cpu-general"): (Endpoint("127.0.0.1", 9001),),
                             ("us-east-1", "gpu-small"): (Endpoint("127.0.0.1", 9101),)})
    jwks = SigningKey.load_or_create(cfg_dir / "state").jwks()
    compiled = Compiler().compile(CompileInputs(load_config(cfg_dir), eps, jwks))
    us = compiled.snapshots["us-east-1"]
    assert unpack(us, CLUSTER, "tenant/acme/embedder/us-east-1", cluster_pb2.Cluster).HasField("lb_subset_config")
    globex = unpack(us, CLUSTER, "tenant/globex/classifier/us-east-1", cluster_pb2.Cluster)
    assert not globex.HasField("lb_subset_config")
    for region, snapshot in compiled.snapshots.items():
        assert validator.check(None, snapshot) is None, region
