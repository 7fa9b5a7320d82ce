"""The compiler's promises: per-tenant resources, splits and caps from the spec, stable names, and an
edit to one tenant touching only that tenant's resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2

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
    assert cluster.eds_cluster_config.service_name == "model/embedder/us-east-1"
    # Versions are subsets of the cluster's hosts; a version without replicas is refused, never another.
    subsets = cluster.lb_subset_config
    assert [list(s.keys) for s in subsets.subset_selectors] == [["version"]]
    assert subsets.fallback_policy == cluster_pb2.Cluster.LbSubsetConfig.NO_FALLBACK and subsets.list_as_any
    hooli = unpack(us, CLUSTER, "tenant/hooli/classifier/us-east-1", cluster_pb2.Cluster)
    assert hooli.circuit_breakers.thresholds[0].max_requests.value == 4  # free tier default


def _version_of(match) -> str:  # type: ignore[no-untyped-def]
    return str(match.filter_metadata["envoy.lb"].fields["version"].string_value)


def test_split_becomes_weighted_entries_on_one_cluster_and_rules_become_headers() -> None:
    us = compile_dir(REPO_CONFIG).snapshots["us-east-1"]
    rc = unpack(us, ROUTE, "tenant/acme", route_pb2.RouteConfiguration)
    vhost = rc.virtual_hosts[0]
    split = next(r for r in vhost.routes if r.name == "embedder").route.weighted_clusters
    # One cluster named once per version, each entry picking its version's subset and telling the
    # runtime which version to run.
    assert {(c.name, c.weight.value, _version_of(c.metadata_match),
             {h.header.key: h.header.value for h in c.request_headers_to_add}["x-fairshare-model-version"])
            for c in split.clusters} == {
        ("tenant/acme/embedder/us-east-1", 90, "v1", "v1"), ("tenant/acme/embedder/us-east-1", 10, "v2", "v2"),
    }
    pinned = next(r for r in vhost.routes if r.name == "embedder/v2")
    assert pinned.match.path_separated_prefix == "/v2/models/embedder/versions/v2"
    assert pinned.route.cluster == "tenant/acme/embedder/us-east-1"
    assert _version_of(pinned.route.metadata_match) == "v2"
    headers = {h.header.key: h.header.value for h in vhost.request_headers_to_add}
    assert headers["x-fairshare-region"] == "us-east-1"
    assert headers["x-fairshare-weight"] == "4"
    # acme is a payment tenant: policy/pii adds iban and national_id to what its file names
    assert headers["x-fairshare-pii-redact"] == "email,iban,ip_address,national_id,phone"
    assert headers["x-fairshare-pii-block"] == "credit_card"
    forbidden = [r for r in unpack(us, ROUTE, "tenant/globex", route_pb2.RouteConfiguration).virtual_hosts[0].routes
                 if r.name == "forbidden/embedder"]
    assert forbidden and forbidden[0].direct_response.status == 403


def test_residency_a_region_holds_only_the_tenants_allowed_there() -> None:
    eu = compile_dir(REPO_CONFIG).snapshots["eu-west-1"]
    # globex is US-only: nothing of it exists in the EU snapshot, so no route can send its data there.
    assert not [n for t in (CLUSTER, ROUTE, SCOPED_ROUTE) for n in eu.of_type(t) if n.startswith("tenant/globex")]
    scope = unpack(eu, SCOPED_ROUTE, "tenant/initech", scoped_route_pb2.ScopedRouteConfiguration)
    assert scope.key.fragments[0].string_key == "initech"
    # No EU route of any tenant selects a US-only model version, and the EU's replicas never claim it.
    selected = {(route.name.split("/")[0], _version_of(m))
                for name in eu.of_type(ROUTE)
                for route in unpack(eu, ROUTE, name, route_pb2.RouteConfiguration).virtual_hosts[0].routes
                for m in (route.route.metadata_match, *(c.metadata_match for c in route.route.weighted_clusters.clusters))
                if m.filter_metadata}
    assert ("classifier", "v1") in selected and ("classifier", "v2") not in selected
    classifier = unpack(eu, ENDPOINT, "model/classifier/eu-west-1", endpoint_pb2.ClusterLoadAssignment)
    assert {tuple(v.string_value for v in lb.metadata.filter_metadata["envoy.lb"].fields["version"].list_value.values)
            for lb in classifier.endpoints[0].lb_endpoints} <= {("v1",)}


def _replicas(snapshot: Snapshot, name: str) -> dict[str, tuple[str, ...]]:
    cla = unpack(snapshot, ENDPOINT, name, endpoint_pb2.ClusterLoadAssignment)
    return {f"{lb.endpoint.address.socket_address.address}:{lb.endpoint.address.socket_address.port_value}":
            tuple(v.string_value for v in lb.metadata.filter_metadata["envoy.lb"].fields["version"].list_value.values)
            for loc in cla.endpoints for lb in loc.lb_endpoints}


def test_endpoints_are_shared_per_model_each_replica_tagged_with_its_versions() -> None:
    us = compile_dir(REPO_CONFIG).snapshots["us-east-1"]
    # (pool/<pool>/<region> sets are the own-model clusters', tests/compiler/test_own_models.py)
    assert sorted(n for n in us.of_type(ENDPOINT) if n.startswith("model/")) == [
        "model/classifier/us-east-1", "model/embedder/us-east-1",
    ]
    # classifier v1 and v2 run on the same pool: each replica once, serving both (one host per replica
    # in each tenant cluster, whatever its split).
    assert _replicas(us, "model/classifier/us-east-1") == {"127.0.0.1:9001": ("v1", "v2"), "127.0.0.1:9002": ("v1", "v2")}


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
    split = next(r for r in unpack(after, ROUTE, "tenant/hooli", route_pb2.RouteConfiguration).virtual_hosts[0].routes
                 if r.name == "classifier").route.weighted_clusters
    assert {(c.name, _version_of(c.metadata_match), c.weight.value) for c in split.clusters} == {
        ("tenant/hooli/classifier/us-east-1", "v1", 30), ("tenant/hooli/classifier/us-east-1", "v2", 70)}



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
