from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """A copy of the repository's config that a test may edit."""
    return Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
