"""Evaluate the infrastructure policy on a plan with the embedded engine, with the tenant config's regions
in `input.tenants` (the shape `fairshare policy check --plan` passes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import regorus

from xds_server.config import load_config

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policy" / "infrastructure" / "infrastructure.rego"


def tenant_regions(config_dir: Path = REPO / "config") -> dict[str, Any]:
    cfg = load_config(config_dir)
    return {t.id: {"regions": t.spec.regions.model_dump(mode="json")} for t in cfg.tenants.values()}


def violations(plan: dict[str, Any], tenants: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    """(rule, subject) of every violation."""
    engine = regorus.Engine()
    engine.add_policy_from_file(str(POLICY))
    engine.set_input({**plan, "tenants": tenant_regions() if tenants is None else tenants})
    # As JSON: a Rego set of objects has no Python set to become.
    found = json.loads(engine.eval_rule_as_json("data.fairshare.infrastructure.violations"))
    return {(v["rule"], v["subject"]) for v in found}
