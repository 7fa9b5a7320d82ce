"""The rendered chart and the control plane agree: the cluster's control plane loads the very tenant spec the
manifests were generated from, and the tenants, quotas and GPU limits in the manifests are the config's."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from tests.chart import kubelet
from tests.chart.helm import CONFIG, by_kind, find
from xds_server.config import PlatformConfig, load_config
from xds_server.config.model import Platform
from xds_server.controlplane.service import ControlPlane
from xds_server.deploy import is_dedicated
from xds_server.xds.store import SnapshotStore

Manifests = list[dict[str, Any]]


def _config_volume(manifests: Manifests, target: Path) -> Path:
    cm = find(manifests, "ConfigMap", "fairshare-config")
    cp = find(manifests, "Deployment", "fairshare-control-plane")
    kubelet.project(target, cm["data"], kubelet.items(cp, "config"), cm.get("binaryData"))
    return target


def test_control_plane_in_the_cluster_loads_the_same_config(
    rendered: dict[str, Manifests], config: PlatformConfig, tmp_path: Path
) -> None:
    from xds_server.config.loader import ArtifactDigests, TenantFileCache

    for region in config.regions:
        mounted = _config_volume(rendered[f"region:{region}"], tmp_path / region)
        # As `serve --region` loads it: the model files of the tenants allowed here are the mount's.
        got = load_config(mounted, TenantFileCache(digests=ArtifactDigests(regions=frozenset({region}))))
        # The same config, but for where it lies (local artifacts resolve under the mount, not the repo),
        # and for the sizes of artifacts of tenants not allowed here, which are not in this cluster.
        def unmeasured(cfg: PlatformConfig, region: str = region) -> PlatformConfig:
            tenants = {tid: t if region in t.spec.regions.allowed else t.model_copy(update={"spec": t.spec.model_copy(
                update={"own_models": {m: om.model_copy(update={"versions": {
                    v: ov.model_copy(update={"bytes": None}) for v, ov in om.versions.items()}})
                    for m, om in t.spec.own_models.items()}})}) for tid, t in cfg.tenants.items()}
            return cfg.model_copy(update={"tenants": tenants})

        assert _relative(got, mounted) == _relative(unmeasured(config), CONFIG)


def _relative(cfg: PlatformConfig, root: Path) -> str:
    return cfg.model_dump_json().replace(f'"{root}/', '"<config>/')


def test_runtimes_find_local_artifacts_where_the_control_plane_resolved_them(
    rendered: dict[str, Manifests], config: PlatformConfig, tmp_path: Path
) -> None:
    manifests = rendered["region:us-east-1"]
    cm = find(manifests, "ConfigMap", "fairshare-config")
    cp = find(manifests, "Deployment", "fairshare-control-plane")
    (cp_mount,) = [m["mountPath"] for m in cp["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                   if m["name"] == "config"]
    local = {ov.artifact: ov.sha256 for t in config.tenants.values() for m in t.spec.own_models.values()
             for ov in m.versions.values() if not ov.artifact.startswith("s3://")}
    assert local, "the example config has own models with local artifacts"
    runtimes = [d for d in by_kind(manifests, "Deployment")
                if d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"]
    for d in runtimes:
        (container,) = d["spec"]["template"]["spec"]["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "model-files"]
        assert mount["mountPath"] == cp_mount and mount["readOnly"] is True
        volume = tmp_path / d["metadata"]["name"]
        kubelet.project(volume, {}, kubelet.items(d, "model-files"), cm["binaryData"])
        for artifact, sha in local.items():
            # The path the control plane puts on the route, read inside the runtime's mount.
            inside = volume / Path(artifact).relative_to(CONFIG)
            assert hashlib.sha256(inside.read_bytes()).hexdigest() == sha, artifact
        assert not (volume / "tenants").exists()  # the runtimes get the model files, not the tenant files


def test_a_region_holds_only_the_model_files_of_tenants_allowed_there(
        rendered: dict[str, Manifests], config: PlatformConfig) -> None:
    """A tenant's model bytes stay in the regions its residency allows, as its S3 artifacts must: globex
    (us-east-1 only) has none in eu-west-1's cluster, acme (both) in each; the control plane is told its
    region, so it reads and checks only those."""
    def shipped(region: str) -> set[str]:
        cm = find(rendered[f"region:{region}"], "ConfigMap", "fairshare-config")
        return {key for key in cm.get("binaryData", {}) if key.startswith("models.")}

    def owned(tenant: str) -> set[str]:
        return {"models." + Path(ov.artifact).relative_to(CONFIG / "models").as_posix().replace("/", ".")
                for m in config.tenants[tenant].spec.own_models.values() for ov in m.versions.values()}

    assert config.tenants["globex"].spec.regions.allowed == ["us-east-1"] and owned("globex")
    assert owned("globex") <= shipped("us-east-1") and not owned("globex") & shipped("eu-west-1")
    assert owned("acme") <= shipped("us-east-1") and owned("acme") <= shipped("eu-west-1")
    for region in ("us-east-1", "eu-west-1"):
        args = find(rendered[f"region:{region}"], "Deployment", "fairshare-control-plane")[
            "spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--region") + 1] == region


def test_opa_server_is_the_policy_backend_when_enabled(rendered: dict[str, Manifests], tmp_path: Path) -> None:
    manifests = rendered["region:us-east-1+production"]
    # Read as the loader reads platform.yaml (load_config itself would call the OPA server, not running here).
    mounted = _config_volume(manifests, tmp_path)
    platform = Platform.model_validate(yaml.safe_load((mounted / "platform.yaml").read_text()))
    assert platform.policy.backend == "opa"
    # OPA is each control plane's sidecar on loopback: reachable from its own pod only.
    assert platform.policy.opa_url == "http://127.0.0.1:8181"
    containers = find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]["containers"]
    (opa,) = [c for c in containers if c["name"] == "opa"]
    assert opa["args"][opa["args"].index("--addr") + 1] == "127.0.0.1:8181"
    assert not [m for m in manifests if m["metadata"]["name"] == "fairshare-opa"]
    # Everything else in it is the spec's.
    spec = yaml.safe_load((CONFIG / "platform.yaml").read_text())
    assert platform.model_dump(exclude={"policy"}) == Platform.model_validate(spec).model_dump(exclude={"policy"})


def test_rate_limit_service_is_reached_where_the_control_plane_serves_it(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["region:us-east-1"]
    (container,) = find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--ratelimit-port") + 1] == "18002"
    # As the ACL user the Redis Deployment defines, its password from the Secret in the environment: never in
    # the arguments (the process list, the pod spec).
    assert args[args.index("--ratelimit-redis-url") + 1] == "redis://fairshare@fairshare-redis:6379/0"
    assert not any("PASSWORD" in a for a in args)
    env = {e["name"]: e for e in container["env"]}
    assert env["FAIRSHARE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "fairshare-redis-auth",
                                                                            "key": "password"}
    assert find(manifests, "Service", "fairshare-redis")["spec"]["ports"][0]["port"] == 6379
    ports = {p["name"]: p["port"] for p in find(manifests, "Service", "fairshare-control-plane")["spec"]["ports"]}
    assert ports["grpc-ratelimit"] == 18002
    # Without Redis (examples/small.yaml) the control plane counts in memory.
    (small,) = find(rendered["region:us-east-1+small"], "Deployment",
                    "fairshare-control-plane")["spec"]["template"]["spec"]["containers"]
    assert "--ratelimit-redis-url" not in small["args"]


def test_dedicated_tenants_get_namespaces_with_their_gpu_quota(
    rendered: dict[str, Manifests], config: PlatformConfig
) -> None:
    for region in config.regions:
        manifests = rendered[f"region:{region}"]
        expected = {t.id: t for t in config.tenants.values() if region in t.spec.regions.allowed and is_dedicated(t)}
        namespaces = {ns["metadata"]["labels"]["fairshare.io/tenant"]: ns for ns in by_kind(manifests, "Namespace")}
        assert set(namespaces) == set(expected), region
        assert expected, "the example config has tenants with dedicated capacity in every region"
        for tenant_id, tenant in expected.items():
            ns = namespaces[tenant_id]["metadata"]
            assert ns["name"] == f"tenant-{tenant_id}"
            quota = find(manifests, "ResourceQuota", "tenant-quota", namespace=ns["name"])
            assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == str(tenant.quotas.gpus)
            notes = ns["annotations"]
            assert int(notes["fairshare.io/concurrency"]) == tenant.quotas.concurrency
            assert float(notes["fairshare.io/requests-per-second"]) == tenant.quotas.requests_per_second
            assert int(notes["fairshare.io/tokens-per-minute"]) == tenant.quotas.tokens_per_minute
            assert float(notes["fairshare.io/weight"]) == tenant.weight
            assert ns["labels"]["fairshare.io/tier"] == tenant.spec.tier


def test_pools_run_their_model_versions_with_the_pools_gpus(
    rendered: dict[str, Manifests], config: PlatformConfig
) -> None:
    for region_id, region in config.regions.items():
        manifests = rendered[f"region:{region_id}"]
        runtimes = {d["metadata"]["labels"]["fairshare.io/pool"]: d for d in by_kind(manifests, "Deployment")
                    if d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"}
        # Every model version deployed in the region runs on its pool, pools with tenants' own models routed
        # there run too (own models load on first request), and nothing else runs.
        expected: dict[str, set[str]] = {}
        for name, model in config.models.items():
            for version, mv in model.versions.items():
                if region_id in config.version_regions(name, version):
                    expected.setdefault(mv.pool, set()).add(f"{name}:{version}:{mv.loader}")
        for t in config.tenants.values():
            for m in t.own_routes.get(region_id, ()):
                if m in t.spec.own_models:
                    expected.setdefault(t.spec.own_models[m].pool, set())
        assert set(runtimes) == set(expected), region_id
        gpus_total = 0
        for pool_name, d in runtimes.items():
            pool = region.pool(pool_name)
            assert pool is not None
            spec = d["spec"]["template"]["spec"]
            (container,) = spec["containers"]
            args = container["args"]
            assert {args[i + 1] for i, a in enumerate(args) if a == "--model"} == expected[pool_name]
            assert args[:4] == ["--region", region_id, "--pool", pool_name]
            assert d["spec"]["replicas"] == pool.replicas
            assert spec["nodeSelector"] == {"fairshare.io/pool": pool_name}
            for kind in ("limits", "requests"):
                assert container["resources"][kind].get("nvidia.com/gpu", 0) == pool.gpus_per_replica
            gpus_total += pool.replicas * pool.gpus_per_replica
        assert gpus_total > 0, "the example config has a GPU pool in every region"
        quota = find(manifests, "ResourceQuota", "fairshare-platform")
        assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == str(gpus_total)


def test_gateway_listens_where_the_compiler_puts_the_listener(
    rendered: dict[str, Manifests], config: PlatformConfig
) -> None:
    for region_id, region in config.regions.items():
        manifests = rendered[f"region:{region_id}"]
        (container,) = find(manifests, "Deployment", "fairshare-gateway")["spec"]["template"]["spec"]["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": region.gateway_port}]
        bootstrap = json.loads(find(manifests, "ConfigMap", "fairshare-gateway-bootstrap")["data"]["bootstrap.json"])
        assert bootstrap["node"]["metadata"]["region"] == region_id


def test_config_map_update_is_hot_reloaded(rendered: dict[str, Manifests], tmp_path: Path) -> None:
    """`helm upgrade` with an edited tenant: the kubelet swaps the volume; the running control plane reloads."""
    manifests = rendered["region:us-east-1"]
    mounted = _config_volume(manifests, tmp_path / "config")
    cm = find(manifests, "ConfigMap", "fairshare-config")
    items = kubelet.items(find(manifests, "Deployment", "fairshare-control-plane"), "config")

    async def scenario() -> None:
        cp = ControlPlane(mounted, None, '{"keys": []}', SnapshotStore())
        first = cp.reload()
        assert first.ok, first.error
        stop = asyncio.Event()
        watcher = asyncio.create_task(cp.watch(stop))
        await asyncio.sleep(0.5)
        edited = dict(cm["data"])
        edited["tenants.acme.yaml"] = edited["tenants.acme.yaml"].replace("{v1: 90, v2: 10}", "{v1: 70, v2: 30}")
        kubelet.project(mounted, edited, items, cm.get("binaryData"))
        for _ in range(400):
            await asyncio.sleep(0.05)
            if cp.last is not None and cp.last.version != first.version:
                break
        stop.set()
        await asyncio.wait_for(watcher, 10)
        assert cp.last is not None and cp.last.ok and cp.last.version != first.version
        assert cp.config is not None
        assert dict(cp.config.tenants["acme"].spec.models["embedder"].split) == {"v1": 70, "v2": 30}

    asyncio.run(scenario())
