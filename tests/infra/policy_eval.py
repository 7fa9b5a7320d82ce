"""Evaluate the infrastructure policy on a plan with the embedded engine, with the tenant config's regions
in `input.tenants` (the shape `fairshare policy check --plan` passes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xds_server.config import load_config
from xds_server.policy.check import INFRASTRUCTURE, plan_input
from xds_server.policy.check import violations as policy_violations

REPO = Path(__file__).resolve().parents[2]


def tenant_regions(config_dir: Path = REPO / "config") -> dict[str, Any]:
    return dict(plan_input({}, load_config(config_dir))["tenants"])


def violations(plan: dict[str, Any], tenants: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    """(rule, subject) of every violation, as `fairshare policy check --plan` finds them."""
    found = policy_violations(INFRASTRUCTURE, {**plan, "tenants": tenant_regions() if tenants is None else tenants})
    return {(v.rule, v.subject) for v in found}
