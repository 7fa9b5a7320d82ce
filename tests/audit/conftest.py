"""Fixtures for the audit tests: a copy of the example config served by a real ControlPlane (no Envoy:
the audit hook sits in the reload path, after validation), and its trail."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xds_server.audit import AuditLog
from xds_server.audit.trail import ControlPlaneAudit
from xds_server.controlplane.service import ControlPlane
from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.xds.store import SnapshotStore

CONFIG = Path(__file__).resolve().parents[2] / "config"


@dataclass
class Audited:
    config: Path
    log_path: Path
    cp: ControlPlane

    def edit(self, tenant: str, old: str, new: str) -> None:
        path = self.config / "tenants" / f"{tenant}.yaml"
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new))

    def records(self) -> list[dict[str, Any]]:
        return list(AuditLog(self.log_path).records())


@pytest.fixture
def audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Audited:
    monkeypatch.setenv("FAIRSHARE_POLICY_DIR", str(DEFAULT_POLICY_DIR))
    config = tmp_path / "config"
    # The example tenants' own models point at ../models: copied along so their artifacts resolve.
    shutil.copytree(CONFIG, config)
    log_path = tmp_path / "state" / "audit" / "audit.jsonl"
    cp = ControlPlane(config, None, '{"keys": []}', SnapshotStore())
    cp.audit = ControlPlaneAudit.of(cp, AuditLog(log_path))
    return Audited(config, log_path, cp)
