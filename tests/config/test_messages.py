"""What the loader says about a mistake a person makes in a config file: the file, the field, and what to write
instead, in words rather than YAML's or pydantic's internals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xds_server.config import ConfigError, load_config
from xds_server.config.errors import Problem

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
REGIONS = "regions: {home: us-east-1, allowed: [us-east-1]}\n"


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, target)
    return target


def problems_of(directory: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return info.value.problems


def tenant(cfg_dir: Path, text: str | bytes, name: str = "hooli") -> Path:
    path = cfg_dir / "tenants" / f"{name}.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_key_written_twice_is_refused_naming_both_lines(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\ntier: pro\n" + REGIONS)
    assert problems_of(cfg_dir) == [
        Problem(str(path), "line 3, column 1", "not valid YAML: duplicate key 'tier' (first at line 2)")]


def test_a_version_written_twice_in_a_split_is_not_a_split_of_half(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\n" + REGIONS + "models: {classifier: {split: {v2: 50, v2: 50}}}\n")
    assert problems_of(cfg_dir) == [
        Problem(str(path), "line 4, column 39", "not valid YAML: duplicate key 'v2' (first at line 4, column 31)")]
