"""A tenant with own models is an entry of its own (its document keeps its id), remembered while its
document, the policies and the platform stay the same (xds_server/policy/decide.py): the answers are
exactly a fresh evaluation's, violations included, and anything that could change them is evaluated again."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.synth import REPO_CONFIG
from xds_server.config import load_config
from xds_server.config.model import PolicySettings, Tenant
from xds_server.policy.backends import DEFAULT_POLICY_DIR, make_engine
from xds_server.policy.decide import Decisions, PolicyDecider, spec_digest
from xds_server.policy.resolve import platform_document, tenant_document

Docs = dict[str, dict[str, Any]]


@pytest.fixture
def decider(tmp_path: Path) -> Iterator[PolicyDecider]:
    policy = Path(shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policy",
                                  ignore=shutil.ignore_patterns("*_test.rego")))
    engine = make_engine(PolicySettings())
    try:
        yield PolicyDecider(engine, policy)
    finally:
        engine.close()


@pytest.fixture(scope="module")
def repo() -> tuple[dict[str, Any], dict[str, Tenant]]:
    cfg = load_config(REPO_CONFIG)
    tenants = {t.id: t.spec for t in cfg.tenants.values()}
    assert tenants["acme"].own_models and tenants["globex"].own_models
    # globex's spec without its own models: what globex shares an evaluation with once they are remembered.
    tenants["twin"] = tenants["globex"].model_copy(update={"id": "twin", "own_models": {}})
    return platform_document(cfg.tiers, cfg.regions, cfg.models), tenants


def decide(decider: PolicyDecider, platform: dict[str, Any], tenants: dict[str, Tenant],
           changes: Docs | None = None) -> Decisions:
    docs = {tid: tenant_document(t) for tid, t in tenants.items()}
    docs.update(changes or {})
    return decider.decide(platform, docs, {tid: spec_digest(d) for tid, d in docs.items()})


def fresh(platform: dict[str, Any], tenants: dict[str, Tenant], changes: Docs | None = None) -> Decisions:
    engine = make_engine(PolicySettings())
    try:
        docs = {tid: tenant_document(t) for tid, t in tenants.items()}
        docs.update(changes or {})
        return PolicyDecider(engine, DEFAULT_POLICY_DIR).decide(platform, docs)
    finally:
        engine.close()


def test_remembered_decisions_are_a_fresh_evaluations(decider: PolicyDecider, repo: Any) -> None:
    platform, tenants = repo
    first = decide(decider, platform, tenants)
    # globex and twin (its spec without own models, or id) are two entries.
    assert decider.last_evaluated == len(tenants)
    again = decide(decider, platform, tenants)
    assert decider.last_evaluated == 0  # nothing changed: nothing evaluated again
    expected = fresh(platform, tenants)
    assert again.tenants == first.tenants == expected.tenants
    assert again.violations == first.violations == expected.violations
    assert again.tenants["acme"]["own_routes"] == {"us-east-1": ["ticket-router"], "eu-west-1": ["ticket-router"]}


def test_a_remembered_violation_is_still_reported(decider: PolicyDecider, repo: Any) -> None:
    platform, tenants = repo
    acme = tenant_document(tenants["acme"])
    stolen = {**acme, "own_models": {"rr": {**acme["own_models"]["ticket-router"], "versions": {"1": {
        **acme["own_models"]["ticket-router"]["versions"]["1"],
        "artifact": "s3://fairshare-us-east-1-models/tenants/globex/r/1/model.onnx"}}, "split": {"1": 100}}}}
    # The tenant objects stay acme's; only its document changes, as a new file would.
    decide(decider, platform, tenants)
    for evaluated in (1, 0):
        found = decide(decider, platform, tenants, {"acme": stolen})
        assert decider.last_evaluated == evaluated
        assert [(v.subject, v.field, v.rule) for v in found.violations if v.concern == "models"] == [
            ("acme", "own_models.rr.versions.1.artifact", "own-model-artifact-outside-tenant-prefix")]
    assert found.violations == fresh(platform, tenants, {"acme": stolen}).violations


def test_a_changed_own_model_spec_is_evaluated_again(decider: PolicyDecider, repo: Any) -> None:
    platform, tenants = repo
    decide(decider, platform, tenants)
    acme = tenant_document(tenants["acme"])
    router = acme["own_models"]["ticket-router"]
    moved = {**acme, "own_models": {"ticket-router": {**router, "pool": "nowhere"}}}
    found = decide(decider, platform, tenants, {"acme": moved})
    assert ("acme", "own_models.ticket-router.pool", "own-model-pool-missing") in {
        (v.subject, v.field, v.rule) for v in found.violations}
    assert found.tenants["acme"]["own_routes"] == {"us-east-1": [], "eu-west-1": []}


def test_a_policy_change_is_evaluated_again(decider: PolicyDecider, repo: Any) -> None:
    platform, tenants = repo
    assert not decide(decider, platform, tenants).violations
    rego = decider.policy_dir / "models" / "models.rego"
    # A stricter rule: no tier allows more than 0 bytes per model.
    rego.write_text(rego.read_text().replace('"max_bytes_per_model", 0)', '"max_bytes_per_model_v2", 0)'))
    found = decide(decider, platform, tenants)
    assert {(v.subject, v.rule) for v in found.violations} >= {
        ("acme", "own-model-too-large"), ("globex", "own-model-too-large")}


def test_a_platform_change_is_evaluated_again(decider: PolicyDecider, repo: Any) -> None:
    platform, tenants = repo
    decide(decider, platform, tenants)
    smaller = {**platform, "tiers": {name: {**tier, "own_models": {**tier.get("own_models", {}), "formats": []}}
                                     for name, tier in platform["tiers"].items()}}
    found = decide(decider, smaller, tenants)
    assert {(v.subject, v.rule) for v in found.violations} >= {
        ("acme", "own-model-format-not-allowed"), ("globex", "own-model-format-not-allowed")}
