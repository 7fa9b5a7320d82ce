"""`fairshare chart-values`: the tenant spec as the chart's values, for one region."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CONFIG, REPO
from xds_server.cli import main
from xds_server.config import load_config


def test_writes_the_regions_values(tmp_path: Path) -> None:
    out = tmp_path / "values.yaml"
    assert main(["chart-values", "--config", str(CONFIG), "--region", "eu-west-1",
                 "--policy", str(REPO / "policy"), "-o", str(out)]) == 0
    spec = yaml.safe_load(out.read_text())["spec"]
    cfg = load_config(CONFIG)
    assert spec["region"] == "eu-west-1"
    # Residency: only the tenants allowed in the region, and the model versions deployed there.
    assert [t["id"] for t in spec["tenants"]] == sorted(
        t.id for t in cfg.tenants.values() if "eu-west-1" in t.spec.regions.allowed)
    served = {(m["name"], m["version"]) for p in spec["pools"] for m in p["models"]}
    deployed = {(m, v) for m, model in cfg.models.items() for v in model.versions
                if "eu-west-1" in cfg.version_regions(m, v)}
    assert served == deployed
    assert deployed != {(m, v) for m, model in cfg.models.items() for v in model.versions}, \
        "the example config keeps a model version out of eu-west-1"
    files = {f["path"]: f["content"] for f in spec["configFiles"]}
    assert files["tenants/globex.yaml"] == (CONFIG / "tenants" / "globex.yaml").read_text()
    assert "admission/admission.rego" in {f["path"] for f in spec["policyFiles"]}
    assert not [f for f in spec["policyFiles"] if f["path"].endswith("_test.rego")]


def test_unknown_region_is_an_error_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chart-values", "--config", str(CONFIG), "--region", "mars-1"]) == 2
    err = capsys.readouterr().err
    # The argument is wrong, not the config.
    assert err.startswith("the chart cannot ship this config (1 problem):")
    assert f"--region: mars-1: not a region of {CONFIG / 'regions.yaml'} (known: eu-west-1, us-east-1)" in err


def test_invalid_config_is_reported_not_rendered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chart-values", "--config", str(tmp_path / "nowhere"), "--region", "us-east-1"]) == 2
    assert "config directory does not exist" in capsys.readouterr().err


def test_config_too_large_for_a_config_map_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    with (config / "models.yaml").open("a") as f:
        f.write(("# " + "x" * 98 + "\n") * 11_000)  # 1.1 MB of comments: still a valid config
    assert main(["chart-values", "--config", str(config), "--region", "us-east-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("the chart cannot ship this config") and "config is invalid" not in err
    assert "over the 1,032,192 a Kubernetes ConfigMap holds" in err
    # Cells do not shrink it (every region's control plane reads the whole config): a bucket does.
    assert "split the tenants into cells" not in err and "serve the config from a bucket" in err
