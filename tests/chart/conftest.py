"""Rendered chart fixtures: the chart's defaults, each example, and each region of the example tenant spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
