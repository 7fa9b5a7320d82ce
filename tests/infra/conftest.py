"""Fixtures for the Terraform tests: one moto server and one planned eu-west-1 region per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.terraform_driver import MotoServer, Region, plugin_dir, terraform_bin

REGION = "eu-west-1"
# Who the planned region lets read its audit trail back (audit_reader_arns): an auditor in another account.
AUDITOR = "arn:aws:iam::333333333333:role/soc2-auditor"


def require_terraform() -> None:
    if terraform_bin() is None:
        pytest.skip("terraform is not on PATH (install Terraform >= 1.11 to run the infrastructure tests)")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    require_terraform()
    if plugin_dir() is None:
        pytest.skip("no local provider mirror (/opt/tf-plugins or $TF_PLUGIN_DIR): the moto tests run offline")
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PlannedRegion:
    region: Region
    plan_file: Path
    plan: dict[str, Any]


@pytest.fixture(scope="session")
def planned_region(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> PlannedRegion:
    """The eu-west-1 root, initialised on its remote state in moto and planned (what `make region-plan` does)."""
    root = tmp_path_factory.mktemp("region")
    region = Region.in_copy(root, REGION, moto, extra_vars={"audit_reader_arns": json.dumps([AUDITOR])})
    region.init()
    plan_file = root / f"{REGION}.tfplan"
    region.plan(plan_file)
    return PlannedRegion(region, plan_file, region.show_json(plan_file))
