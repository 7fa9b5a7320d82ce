"""The example config's tiers, which new platforms copy: every quota a tenant may override is capped."""

from __future__ import annotations

import shutil
from pathlib import Path

from xds_server.config.loader import load_config
from xds_server.config.model import EffectiveQuotas, clamped_notes

REPO = Path(__file__).resolve().parents[2]


def test_every_tier_caps_every_quota_a_tenant_may_override(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    # GPUs asked within every tier's limit: a guarantee over the region's pools is refused, not clamped.
    asks = {"concurrency": 100_000, "requests_per_second": 1e6, "tokens_per_minute": 99_999_999}
    quotas = ", ".join(f"{k}: {v}" for k, v in {**asks, "gpus": 0}.items())
    for tier in ("free", "pro", "enterprise"):
        (config / "tenants" / f"greedy-{tier}.yaml").write_text(
            f"id: greedy-{tier}\ntier: {tier}\nregions: {{home: us-east-1, allowed: [us-east-1]}}\n"
            f"quotas: {{{quotas}}}\n")
    cfg = load_config(config, policy_dir=REPO / "policy")
    for tier in ("free", "pro", "enterprise"):
        t = cfg.tenants[f"greedy-{tier}"]
        limits = cfg.tiers[tier].limits
        for name in EffectiveQuotas.model_fields:
            assert getattr(limits, name) is not None, f"tier {tier} has no limits.{name}: an override is not capped"
        for name in asks:
            assert getattr(t.quotas, name) == getattr(limits, name)
    notes = clamped_notes(cfg)
    assert any(n.startswith("greedy-free: quotas.tokens_per_minute: asked 99999999") for n in notes), notes
