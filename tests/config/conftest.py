"""The config loader's tests start from a copy of the example config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


def example_copy(tmp_path: Path) -> Path:
    """The example config, copied to `tmp_path`/config for a test to change."""
    return Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return example_copy(tmp_path)
