"""Tenants' own models in the chart (docs/design/0003): each runtime gets its pool's cache budget and an
admin port for the repository extension that only the control plane reaches, never through the gateway's
Service; a pool that hosts only own models still runs replicas; the admission policy admits all of it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_images.runtime.__main__ import parse_settings
from tests.chart.helm import CONFIG, REPO, admission_violations, by_kind, find, template
from tests.chart.netpol import Peer, allowed
from tests.chart.netpol import pod as np_pod
from xds_server.config import PlatformConfig, load_config
from xds_server.config.errors import ConfigError
from xds_server.deploy.helm_values import chart_values, dump_values

Manifests = list[dict[str, Any]]
ADMIN_PORT = 8081  # the images' FAIRSHARE_ADMIN_PORT, the chart's inference.adminPort
OWN_ONLY_POOL = "gpu-tenant"
IDLE_POOL = "cpu-idle"


def runtimes(manifests: Manifests) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["fairshare.io/pool"]: d for d in by_kind(manifests, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_runtimes_get_the_pools_cache_budget_and_an_admin_port(
    rendered: dict[str, Manifests], config: PlatformConfig
) -> None:
    for region_id, region in config.regions.items():
        deployments = runtimes(rendered[f"region:{region_id}"])
        assert deployments, region_id
        for pool_name, d in deployments.items():
            pool = region.pool(pool_name)
            assert pool is not None and pool.model_cache_mb is not None  # the example config sets each
            c = container(d)
            settings, _ = parse_settings(c["args"])
            assert settings.cache_budget_mb == pool.model_cache_mb
            assert settings.admin_port == ADMIN_PORT
            assert {"name": "admin", "containerPort": ADMIN_PORT} in c["ports"]


def test_the_admin_port_is_behind_its_own_service_and_only_the_control_plane_reaches_it(
    rendered: dict[str, Manifests],
) -> None:
    manifests = rendered["region:us-east-1"]
    for pool_name in runtimes(manifests):
        # The pool's Service, the name the gateway's endpoints come from, carries the data plane only.
        serving = find(manifests, "Service", f"fairshare-pool-{pool_name}")
        assert [p["targetPort"] for p in serving["spec"]["ports"]] == ["http"]
        admin = find(manifests, "Service", f"fairshare-pool-{pool_name}-admin")
        assert admin["spec"]["clusterIP"] == "None"
        assert admin["spec"]["ports"] == [{"name": "admin", "port": ADMIN_PORT, "targetPort": "admin"}]
        assert admin["spec"]["selector"] == serving["spec"]["selector"]

    # Under the namespace's NetworkPolicies, as Kubernetes evaluates them: the data plane from the gateway
    # only, the admin port from the control plane only.
    runtime = np_pod(manifests, f"fairshare-pool-{next(iter(runtimes(manifests)))}")
    gateway, control = np_pod(manifests, "fairshare-gateway"), np_pod(manifests, "fairshare-control-plane")
    redis, stranger = np_pod(manifests, "fairshare-redis"), Peer("fairshare", {"app": "something-else"})
    assert allowed(manifests, gateway, runtime, 8080) and not allowed(manifests, gateway, runtime, ADMIN_PORT)
    assert allowed(manifests, control, runtime, ADMIN_PORT) and not allowed(manifests, control, runtime, 8080)
    for other in (redis, stranger):
        assert not allowed(manifests, other, runtime, 8080) and not allowed(manifests, other, runtime, ADMIN_PORT)


@pytest.fixture(scope="module")
def own_only(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[PlatformConfig, Manifests]:
    """The example config with acme's ticket router moved to a GPU pool of its own that no catalog model
    uses, and a pool nothing uses, rendered for us-east-1."""
    root = tmp_path_factory.mktemp("own-only")
    config_dir = root / "config"
    shutil.copytree(CONFIG, config_dir)
    regions_file = config_dir / "regions.yaml"
    regions = yaml.safe_load(regions_file.read_text())
    for region in regions["regions"]:
        region["pools"].append({"name": OWN_ONLY_POOL, "accelerator": "nvidia-l4", "replicas": 3,
                                "gpus_per_replica": 1, "model_cache_mb": 2048})
        region["pools"].append({"name": IDLE_POOL, "accelerator": "cpu", "replicas": 1})
    regions_file.write_text(yaml.safe_dump(regions, sort_keys=False))
    acme_file = config_dir / "tenants" / "acme.yaml"
    acme = yaml.safe_load(acme_file.read_text())
    acme["own_models"]["ticket-router"]["pool"] = OWN_ONLY_POOL
    acme_file.write_text(yaml.safe_dump(acme, sort_keys=False))
    cfg = load_config(config_dir)
    values = root / "us-east-1.yaml"
    values.write_text(dump_values(chart_values(cfg, "us-east-1", config_dir, REPO / "policy")))
    return cfg, template(helm_bin, values)


def test_a_pool_hosting_only_own_models_runs_replicas(own_only: tuple[PlatformConfig, Manifests]) -> None:
    cfg, manifests = own_only
    assert not any(mv.pool == OWN_ONLY_POOL for m in cfg.models.values() for mv in m.versions.values())
    deployments = runtimes(manifests)
    d = deployments[OWN_ONLY_POOL]
    assert d["spec"]["replicas"] == 3
    settings, _ = parse_settings(container(d)["args"])
    assert settings.models == () and settings.cache_budget_mb == 2048 and settings.admin_port == ADMIN_PORT
    assert container(d)["resources"]["limits"]["nvidia.com/gpu"] == 1
    find(manifests, "Service", f"fairshare-pool-{OWN_ONLY_POOL}")
    find(manifests, "Service", f"fairshare-pool-{OWN_ONLY_POOL}-admin")
    # Its GPUs are in the namespace's quota, or the quota would refuse its pods.
    expected_gpus = sum(p.replicas * p.gpus_per_replica for p in cfg.regions["us-east-1"].pools
                        if p.name in deployments)
    quota = find(manifests, "ResourceQuota", "fairshare-platform")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == str(expected_gpus)
    assert expected_gpus == 2 * 2 + 3 * 1


def test_a_pool_with_no_work_runs_nothing(own_only: tuple[PlatformConfig, Manifests]) -> None:
    _, manifests = own_only
    assert IDLE_POOL not in runtimes(manifests)
    assert not [m for m in manifests if m["metadata"]["name"].startswith(f"fairshare-pool-{IDLE_POOL}")]


def test_admission_admits_the_own_models_chart(own_only: tuple[PlatformConfig, Manifests]) -> None:
    assert admission_violations(own_only[1]) == []


def test_an_artifact_outside_the_config_cannot_ship_and_says_so(tmp_path: Path) -> None:
    """A catalog model's (a tenant's own must be in its folder of the config: refused at load)."""
    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG, config_dir)
    outside = tmp_path / "elsewhere" / "model.onnx"
    outside.parent.mkdir()
    shutil.copy(config_dir / "models/acme/ticket-router/1/model.onnx", outside)
    models_file = config_dir / "models.yaml"
    models = yaml.safe_load(models_file.read_text())
    models["models"]["scorer"] = {"kind": "classifier", "versions": {"v1": {
        "pool": "cpu-general", "loader": "onnx", "artifact": str(outside),
        "sha256": hashlib.sha256(outside.read_bytes()).hexdigest()}}}
    models_file.write_text(yaml.safe_dump(models, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        chart_values(load_config(config_dir), "us-east-1", config_dir)
    message = str(caught.value)
    assert "models.yaml" in message and "scorer.versions.v1.artifact" in message
    assert "outside the config directory" in message and "s3://" in message
