"""Rendered chart fixtures: the chart's defaults, each example, and each region of the example tenant spec."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.terraform_driver import MotoServer, Region, plugin_dir, terraform_bin
from tests.chart.helm import CONFIG, EXAMPLES, REPO, find_helm, template
from xds_server.config import PlatformConfig, load_config
from xds_server.deploy.helm_values import chart_values, dump_values


@pytest.fixture(scope="session")
def helm_bin() -> str:
    found = find_helm()
    if found is None:
        pytest.skip("helm is neither on PATH nor in .tools/bin: run `make tools` to fetch it")
    return found


@pytest.fixture(scope="session")
def config() -> PlatformConfig:
    return load_config(CONFIG)


@pytest.fixture(scope="session")
def spec_values(config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated values file of every region, as `fairshare chart-values` writes it."""
    out = tmp_path_factory.mktemp("values")
    files = {}
    for region in config.regions:
        path = out / f"{region}.yaml"
        path.write_text(dump_values(chart_values(config, region, CONFIG, REPO / "policy")))
        files[region] = path
    return files


@pytest.fixture(scope="session")
def rendered(helm_bin: str, spec_values: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """Manifests per case: chart defaults, each example alone, each region, each region with each example."""
    cases: dict[str, list[dict[str, Any]]] = {"defaults": template(helm_bin)}
    for example in EXAMPLES:
        cases[f"example:{example.stem}"] = template(helm_bin, example)
    for region, values in spec_values.items():
        cases[f"region:{region}"] = template(helm_bin, values)
        for example in EXAMPLES:
            cases[f"region:{region}+{example.stem}"] = template(helm_bin, values, example)
    return cases


# The region the chart tests apply with Terraform against moto (its tenants: acme, initech).
APPLIED_REGION = "eu-west-1"


@dataclass
class AppliedRegion:
    moto: MotoServer
    outputs: dict[str, Any]
    values_file: Path  # terraform output -json cluster_addons_values, as make addons-values writes it


@pytest.fixture(scope="session")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppliedRegion]:
    """The region root planned and applied against moto once for every chart test that checks the chart
    against what Terraform built (its outputs, its roles and secrets in moto)."""
    if terraform_bin() is None or plugin_dir() is None:
        pytest.skip("terraform and a local provider mirror are needed to apply the region against moto")
    root = tmp_path_factory.mktemp("applied-region")
    moto = MotoServer(root / "moto").start()
    try:
        region = Region.in_copy(root, APPLIED_REGION, moto)
        region.init(remote_state=False)
        plan_file = root / f"{APPLIED_REGION}.tfplan"
        region.plan(plan_file)
        region.apply(plan_file)
        outputs = region.outputs()
        values_file = root / "addons.json"
        values_file.write_text(region.tf.run("output", "-json", "cluster_addons_values").stdout)
        yield AppliedRegion(moto, outputs, values_file)
    finally:
        moto.stop()
