"""What a reload reuses of the last one (policy/resolve.py) belongs to the tenant files it was loaded
through: another load of the same directory in the process neither reuses nor replaces it, so the control
plane's next edit still redoes only the edited tenant."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.synth import REPO_CONFIG
from xds_server.config import load_config
from xds_server.config.loader import TenantFileCache


def test_another_load_does_not_replace_what_a_reload_reuses(tmp_path: Path) -> None:
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    files = TenantFileCache()
    first = load_config(config, files)
    load_config(config)  # e.g. a benchmark reading the auth settings, or a CLI command in the same process
    again = load_config(config, files)
    assert all(again.tenants[t] is first.tenants[t] for t in first.tenants)
    # An edit is still seen: only the edited tenant is resolved anew.
    acme = config / "tenants" / "acme.yaml"
    acme.write_text(acme.read_text().replace("tier: enterprise", "tier: pro"))
    edited = load_config(config, files)
    assert edited.tenants["acme"] is not first.tenants["acme"] and edited.tenants["acme"].spec.tier == "pro"
    assert all(edited.tenants[t] is first.tenants[t] for t in first.tenants if t != "acme")
