"""The chart with `config.source` (a bundle on S3, or a git-sync checkout): no config ConfigMaps (so no 1 MiB
cap), the control plane gets the flag, and `fairshare chart-values --config-source` leaves the files out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import synth
from tests.chart.helm import HelmError, admission_violations, find, template
from xds_server.cli import main

URL = "s3://fairshare-config-us/fairshare/config.tar.gz"


def control_plane(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def control_plane_violations(manifests: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The admission policy's answer about the control plane's pod (what config.source changes)."""
    return [v for v in admission_violations(manifests) if v["subject"].endswith("/fairshare-control-plane")]


def large_config(tmp_path: Path) -> Path:
    """Past the ConfigMap cap, without local model files (which only a ConfigMap carries to the runtimes)."""
    config = synth.write_config(tmp_path / "config", 2)
    shutil.rmtree(config / "models", ignore_errors=True)
    with (config / "models.yaml").open("a") as f:
        f.write(("# " + "x" * 98 + "\n") * 11_000)  # 1.1 MB of comments: still a valid config
    return config


def values_for(tmp_path: Path, config: Path, source: str) -> Path:
    out = tmp_path / "spec.yaml"
    assert main(["chart-values", "--config", str(config), "--region", "us-east-1", "--config-source", source,
                 "-o", str(out)]) == 0
    return out


def test_chart_values_leave_a_large_config_to_the_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = large_config(tmp_path)
    assert main(["chart-values", "--config", str(config), "--region", "us-east-1"]) == 2
    assert "a Kubernetes ConfigMap holds" in capsys.readouterr().err
    spec = yaml.safe_load(values_for(tmp_path, config, URL).read_text())["spec"]
    assert spec["configFiles"] == [] and spec["policyFiles"] == [] and spec["modelFiles"] == []
    assert [t["id"] for t in spec["tenants"]] == ["t00000", "t00001"]


def test_local_model_files_cannot_go_with_a_config_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chart-values", "--region", "us-east-1", "--config-source", URL]) == 2
    assert "model artifacts given by local path cannot reach the runtimes" in capsys.readouterr().err


def test_s3_source_renders_no_config_maps_and_passes_the_flag(helm_bin: str, tmp_path: Path) -> None:
    spec = values_for(tmp_path, large_config(tmp_path), URL)
    # Its role reads the bundle (the chart refuses an S3 source without one).
    manifests = template(helm_bin, spec, sets=(f"config.source={URL}", "config.pollSeconds=5",
                                               "controlPlane.roleArn=arn:aws:iam::123456789012:role/cp",
                                               "controlPlane.audit.bucket=fairshare-audit"))
    names = {m["metadata"]["name"] for m in manifests if m["kind"] == "ConfigMap"}
    assert not names & {"fairshare-config", "fairshare-policy"}
    pod = control_plane(manifests)
    args = pod["containers"][0]["args"]
    assert args[args.index("--config-source") + 1] == URL and args[args.index("--poll-seconds") + 1] == "5"
    assert "--config" not in args and "--policy" not in args
    assert args[args.index("--source-dir") + 1].startswith("/tmp/")  # an emptyDir: the state may be a Secret
    assert {v["name"] for v in pod["volumes"]}.isdisjoint({"config", "policy"})
    assert control_plane_violations(manifests) == []


def test_git_source_runs_a_pinned_git_sync_sidecar(helm_bin: str, tmp_path: Path) -> None:
    spec = values_for(tmp_path, large_config(tmp_path), "git")
    digest = "sha256:" + "4f2b9c0d" * 8
    manifests = template(helm_bin, spec, sets=("config.source=git", "config.gitSync.repo=https://git.example/cfg",
                                               f"config.gitSync.image.digest={digest}"))
    pod = control_plane(manifests)
    cp, sync = pod["containers"][0], next(c for c in pod["containers"] if c["name"] == "git-sync")
    assert cp["args"][cp["args"].index("--config-source") + 1] == "git:/git/current"
    assert {"name": "git", "mountPath": "/git", "readOnly": True} in cp["volumeMounts"]
    assert sync["image"].endswith("@" + digest)
    assert "--repo=https://git.example/cfg" in sync["args"] and "--link=current" in sync["args"]
    assert sync["securityContext"]["readOnlyRootFilesystem"] is True
    assert control_plane_violations(manifests) == []
    with pytest.raises(HelmError, match="repo"):
        template(helm_bin, spec, sets=("config.source=git",))


def test_without_a_source_the_config_still_travels_in_config_maps(helm_bin: str, spec_values: dict[str, Path]
                                                                  ) -> None:
    manifests = template(helm_bin, spec_values["us-east-1"])
    assert find(manifests, "ConfigMap", "fairshare-config")["data"]
    args = control_plane(manifests)["containers"][0]["args"]
    assert "--config-source" not in args and args[args.index("--config") + 1] == "/etc/fairshare/config"
