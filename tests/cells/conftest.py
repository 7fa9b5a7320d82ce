"""One real platform with a region of two cells: the control plane, one runtime of the light model, a
front-tier Envoy on the region's port and one Envoy per cell on the next ports, as `fairshare run` starts
them (bench.synth.small_config, with `cells: {shared: 2}` and two tenants pinned one to each cell)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bench.synth import small_config
from tests.e2e.conftest import started
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform
from xds_server.local.processes import free_ports_in_a_row

REGION = "us-east-1"
# Pinned (tenant spec `cell:`), so which cell serves whom is known without reading the assignment.
PINS = {"acme": "c1", "globex": "c0"}


@dataclass
class CellsPlatform:
    platform: LocalPlatform
    key: SigningKey
    config_dir: Path

    def token(self, tenant: str) -> str:
        assert self.platform.config is not None
        return issue_token(self.key, self.platform.config.platform.auth, tenant)


def two_cell_config(root: Path) -> Path:
    # The front tier on the first port, cell k on first + 1 + k (the cells contract's local ports).
    config = small_config(root, free_ports_in_a_row(3), replicas=1)
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    acme = yaml.safe_load((config / "tenants" / "acme.yaml").read_text())
    for tenant, cell in PINS.items():
        (config / "tenants" / f"{tenant}.yaml").write_text(
            yaml.safe_dump({**acme, "id": tenant, "cell": cell}, sort_keys=False))
    return config


@pytest.fixture(scope="session")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CellsPlatform]:
    root = tmp_path_factory.mktemp("cells")
    config = two_cell_config(root)
    state = root / "state"
    with started(config, state) as platform:
        yield CellsPlatform(platform, SigningKey.load_or_create(state), config)
