"""The chart runs the control plane highly available: replicas from the config when it says, a
PodDisruptionBudget, spread across nodes and zones, one signing key, and the rate-limit service dialled at
the Service, so every replica compiles the same snapshot; each finds the others through a headless Service
(moves between cells wait on every replica's Envoys). More than one replica with unshared counters is
refused."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import HelmError, find, template
from xds_server.auth.keys import SigningKey

REGION = "us-east-1"


def _cp(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find(manifests, "Deployment", "fairshare-control-plane")


def test_two_replicas_with_budget_spread_and_one_key(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    manifests = rendered[f"region:{REGION}"]
    deployment = _cp(manifests)
    assert deployment["spec"]["replicas"] == 2
    pdb = find(manifests, "PodDisruptionBudget", "fairshare-control-plane")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    spread = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert spread == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    # One key for all: the chart's Secret, mounted where `serve --signing-key` reads it, and a usable ES256 key.
    args = pod["containers"][0]["args"]
    key_path = Path(args[args.index("--signing-key") + 1])
    secret = find(manifests, "Secret", _volume_at(pod, key_path)["secret"]["secretName"])
    (tmp_path / key_path.name).write_bytes(base64.b64decode(secret["data"][key_path.name]))
    assert SigningKey.load(tmp_path / key_path.name).kid
    assert args[args.index("--ratelimit-address") + 1] == "fairshare-control-plane"
    # Each replica asks the others about moves between cells: every ready pod's IP, on the status port.
    peers = find(manifests, "Service", "fairshare-control-plane-peers")
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert not peers["spec"].get("publishNotReadyAddresses")
    [port] = peers["spec"]["ports"]
    ns = deployment["metadata"]["namespace"]
    assert args[args.index("--peers") + 1] == f"fairshare-control-plane-peers.{ns}.svc:{port['port']}"
    assert {"name": "status", "containerPort": port["port"]} in pod["containers"][0]["ports"]


def _volume_at(pod: dict[str, Any], path: Path) -> dict[str, Any]:
    """The control-plane container's volume that holds `path` (its longest mount path above it), with the
    mount's readOnly beside the volume's own fields."""
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on no volume: the container's own filesystem, read-only"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return {**volume, "readOnly": bool(mount.get("readOnly"))}


def test_the_control_plane_writes_only_where_it_can(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Kubernetes mounts a Secret or ConfigMap read-only, and the root filesystem is read-only: the state
    dir (the audit log, S3 revisions) must be an emptyDir, the key a Secret beside it. A control plane whose
    --state was the key's Secret exited at start, unable to make its audit log's folder."""
    for case, manifests in rendered.items():
        pod = _cp(manifests)["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        written = [Path(args[args.index(flag) + 1]) for flag in ("--state", "--source-dir", "--audit-log")
                   if flag in args]
        assert written, case
        for path in written:
            volume = _volume_at(pod, path)
            assert ("emptyDir" in volume or "persistentVolumeClaim" in volume) and not volume["readOnly"], \
                (case, str(path), volume)
        key = _volume_at(pod, Path(args[args.index("--signing-key") + 1]))
        assert "secret" in key and key["readOnly"], (case, key)


def test_operator_secret_replaces_the_chart_key(helm_bin: str, spec_values: dict[str, Path]) -> None:
    manifests = template(helm_bin, spec_values[REGION], sets=("controlPlane.signingKeySecret=idp-key",))
    pod = _cp(manifests)["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert _volume_at(pod, Path(args[args.index("--signing-key") + 1]))["secret"]["secretName"] == "idp-key"
    assert not [m for m in manifests if m["kind"] == "Secret" and m["metadata"]["name"] == "fairshare-signing-key"]


def test_unshared_counters_with_two_replicas_are_refused(helm_bin: str, spec_values: dict[str, Path]) -> None:
    with pytest.raises(HelmError, match=r"controlPlane\.replicas 2 with in-memory rate-limit counters"):
        template(helm_bin, spec_values[REGION], sets=("redis.enabled=false",))
    one = template(helm_bin, spec_values[REGION], sets=("redis.enabled=false", "controlPlane.replicas=1"))
    assert _cp(one)["spec"]["replicas"] == 1
    assert not [m for m in one if m["kind"] == "PodDisruptionBudget" and "control-plane" in m["metadata"]["name"]]
    assert "--peers" not in _cp(one)["spec"]["template"]["spec"]["containers"][0]["args"]


def test_config_replicas_win(helm_bin: str, spec_values: dict[str, Path], tmp_path: Path) -> None:
    """platform.yaml controlplane.replicas, carried by chart-values, is what the chart runs."""
    values = yaml.safe_load(spec_values[REGION].read_text())
    values["spec"]["controlPlane"] = {"replicas": 3, "rateLimitBackend": "redis"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(values))
    assert _cp(template(helm_bin, path))["spec"]["replicas"] == 3
    assert _cp(template(helm_bin, path, sets=("redis.enabled=false",)))["spec"]["replicas"] == 3
