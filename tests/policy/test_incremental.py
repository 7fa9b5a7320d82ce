"""Incremental policy (xds_server/policy/decide.py): after the first decision only changed tenant documents
are evaluated again, and the answers are always exactly a fresh full evaluation's.

The reference is the plainest evaluation there is: a fresh load of the policies and one query of
data.fairshare.tenant.result with every tenant as its own entry (no grouping, nothing remembered)."""

from __future__ import annotations

import copy
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.synth import REPO_CONFIG, tenant_spec, write_config
from xds_server.config import load_config
from xds_server.config.loader import TenantFileCache
from xds_server.config.model import PolicyBackend, PolicySettings
from xds_server.policy.backends import DEFAULT_POLICY_DIR, decider_for, make_engine
from xds_server.policy.check import check_config
from xds_server.policy.decide import Decisions, PolicyDecider, Violation, spec_digest
from xds_server.policy.embedded import EmbeddedEngine
from xds_server.policy.engine import DECISIONS
from xds_server.policy.resolve import platform_document, tenant_document
from xds_server.policy.sources import PolicySources

Docs = dict[str, dict[str, Any]]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policy", ignore=shutil.ignore_patterns("*_test.rego")))


@pytest.fixture(scope="module")
def reference_engine() -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine()
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="module")
def repo() -> tuple[dict[str, Any], Docs]:
    cfg = load_config(REPO_CONFIG)
    docs = {t.id: tenant_document(t.spec) for t in cfg.tenants.values()}
    for i in range(40):  # all distinct: each has its own tokens_per_minute
        spec = tenant_spec(i)
        del spec["id"]
        spec["quotas"] = {"gpus": 0, "tokens_per_minute": 1000 + i}
        docs[f"s{i:02d}"] = spec
    return platform_document(cfg.tiers, cfg.regions, cfg.models), docs


def full_evaluation(engine: EmbeddedEngine, policy: Path, platform: dict[str, Any], docs: Docs) -> Decisions:
    engine.load(PolicySources.load(policy), platform)
    result = engine.query(DECISIONS, {"tenants": docs})

    def violations(raw: list[dict[str, Any]]) -> list[Violation]:
        return sorted({Violation.of(v) for v in raw})

    return Decisions(result["decisions"], violations(result["violations"]), violations(result["adjustments"]), "")


def decide(decider: PolicyDecider, platform: dict[str, Any], docs: Docs) -> Decisions:
    return decider.decide(platform, docs, {tid: spec_digest(d) for tid, d in docs.items()})


# Policy edits that change answers, each flipped on and off by the random walk.
POLICY_EDITS = [
    ("pii/pii.rego", 'default_class := "personal"', 'default_class := "internal"'),
    ("quota/quota.rego", "guaranteed > capacity", "guaranteed >= capacity"),
    ("residency/residency.rego", "\tpct > 0\n", "\tpct > 5\n"),
    ("quota/quota.rego", "w > platform.tiers[t.tier].weight", "w >= platform.tiers[t.tier].weight"),
]


def edit_tenant(rng: random.Random, doc: dict[str, Any]) -> None:
    # GPU guarantees most often: they are what the fleet-wide check sums over every tenant.
    what = rng.choice(["tokens", "gpus", "gpus", "gpus", "weight", "data_class", "regions", "split", "pii"])
    quotas = doc.setdefault("quotas", {})
    if what == "tokens":
        quotas["tokens_per_minute"] = rng.randint(1, 10**6)
    elif what == "gpus":
        doc["tier"] = rng.choice(["enterprise", "pro", "pro", "free"])
        quotas["gpus"] = rng.choice([0, 1, 1, 2, 9])  # 9: clamped to the tier's limit (an adjustment)
    elif what == "weight":
        doc["weight"] = rng.choice([0.5, 1, 2, 5])  # 5: above every tier but enterprise
    elif what == "data_class":
        doc["data_class"] = rng.choice(["public", "internal", "payment", "secret"])  # secret: unknown
    elif what == "regions":
        allowed = rng.choice([["us-east-1"], ["eu-west-1"], ["us-east-1", "eu-west-1"]])
        doc["regions"] = {"home": rng.choice([*allowed, "ap-south-1"]), "allowed": allowed}
    elif what == "split":
        v1 = rng.choice([0, 50, 90, 100])
        doc["models"] = {"classifier": {"split": {"v1": v1, "v2": 100 - v1}}}
    else:
        doc["pii"] = {"redact": rng.sample(["email", "phone", "iban", "ssn"], 2)}


def edit_platform(rng: random.Random, platform: dict[str, Any]) -> str:
    what = rng.choice(["tier", "region", "model"])
    if what == "tier":
        tier = platform["tiers"][rng.choice(sorted(platform["tiers"]))]
        if rng.random() < 0.5:
            tier["quotas"]["gpus"] = rng.choice([0, 1, 2])
        else:
            tier["weight"] = rng.choice([1, 2, 3, 4])
    elif what == "region":
        region = platform["regions"][rng.choice(sorted(platform["regions"]))]
        region["pools"][0]["replicas"] = rng.choice([1, 2, 4, 20])
    else:
        versions = platform["models"]["classifier"]["versions"]
        versions[rng.choice(sorted(versions))]["regions"] = rng.choice(
            [["us-east-1"], ["us-east-1", "eu-west-1"], ["eu-west-1"]])
    return what


def random_walk(decider: PolicyDecider, reference: EmbeddedEngine, policy: Path,
                repo: tuple[dict[str, Any], Docs], steps: int, seed: int) -> set[str]:
    """`steps` random edits; after each, the incremental answer must equal a fresh full evaluation's.
    Returns the kinds of edit made (so the test can check it exercised every kind)."""
    rng = random.Random(seed)
    platform, docs = copy.deepcopy(repo[0]), copy.deepcopy(repo[1])
    made: set[str] = set()
    flipped = [False] * len(POLICY_EDITS)
    for step in range(steps):
        kind = rng.choice(["tenant", "tenant", "tenant", "platform", "policy", "added", "removed"])
        if kind == "tenant":
            edit_tenant(rng, docs[rng.choice(sorted(docs))])
        elif kind == "platform":
            kind = edit_platform(rng, platform)
        elif kind == "policy":
            i = rng.randrange(len(POLICY_EDITS))
            file, before, after = POLICY_EDITS[i]
            path = policy / file
            text = path.read_text()
            old, new = (after, before) if flipped[i] else (before, after)
            assert old in text, (file, old)
            path.write_text(text.replace(old, new, 1))
            flipped[i] = not flipped[i]
        elif kind == "added":
            # Half the time a copy of another tenant's document: it joins that document's entry.
            source = docs[rng.choice(sorted(docs))] if rng.random() < 0.5 else tenant_spec(1000 + step)
            docs[f"new{step}"] = {k: v for k, v in copy.deepcopy(source).items() if k != "id"}
        else:
            docs.pop(rng.choice(sorted(d for d in docs if d not in ("acme", "globex"))))
        made.add(kind)
        got = decide(decider, platform, docs)
        want = full_evaluation(reference, policy, platform, docs)
        assert got.tenants == want.tenants, f"step {step} ({kind})"
        assert got.violations == want.violations, f"step {step} ({kind})"
        assert got.adjustments == want.adjustments, f"step {step} ({kind})"
    return made


def test_incremental_answers_equal_a_full_evaluation_over_random_edits(
        policy: Path, reference_engine: EmbeddedEngine, repo: tuple[dict[str, Any], Docs]) -> None:
    engine = make_engine(PolicySettings())
    try:
        made = random_walk(PolicyDecider(engine, policy), reference_engine, policy, repo, steps=60, seed=14)
    finally:
        engine.close()
    assert made == {"tenant", "tier", "region", "model", "policy", "added", "removed"}


def test_incremental_answers_on_opa_equal_a_full_evaluation(
        opa_url: str, policy: Path, reference_engine: EmbeddedEngine, repo: tuple[dict[str, Any], Docs]) -> None:
    engine = make_engine(PolicySettings(backend=PolicyBackend.OPA, opa_url=opa_url))
    try:
        random_walk(PolicyDecider(engine, policy), reference_engine, policy, repo, steps=25, seed=7)
    finally:
        engine.close()


def test_an_edit_evaluates_only_what_it_changed(policy: Path, repo: tuple[dict[str, Any], Docs]) -> None:
    platform, docs = copy.deepcopy(repo[0]), copy.deepcopy(repo[1])
    engine = make_engine(PolicySettings())
    decider = PolicyDecider(engine, policy)
    try:
        decide(decider, platform, docs)
        assert decider.last_evaluated == len(docs)  # all distinct
        decide(decider, platform, docs)
        assert (decider.last_evaluated, decider.last_fleet_evaluated) == (0, 0)

        docs["s05"]["quotas"]["tokens_per_minute"] = 7
        decide(decider, platform, docs)
        assert decider.last_evaluated == 1
        assert decider.last_fleet_evaluated == 0  # its GPU claim did not change: the fleet check is remembered

        # Two pro tenants guaranteed a GPU in us-east-1 (3 of its 4 are taken): their claims changed.
        docs["s01"]["quotas"]["gpus"] = docs["s07"]["quotas"]["gpus"] = 1
        found = decide(decider, platform, docs)
        assert decider.last_evaluated == 2 and decider.last_fleet_evaluated > 0
        [over] = [v for v in found.violations if v.subject == "us-east-1"]
        assert {"s01=1", "s07=1"} <= set(over.subjects)

        docs["clone"] = dict(docs["s09"])  # an existing document: nothing new to evaluate
        decide(decider, platform, docs)
        assert decider.last_evaluated == 0
        docs["fresh"] = {**docs["s09"], "weight": 0.5}
        decide(decider, platform, docs)
        assert decider.last_evaluated == 1
        del docs["s10"]
        decide(decider, platform, docs)
        assert decider.last_evaluated == 0

        # A tier edit, a region edit or a policy edit may change any answer: everyone is evaluated again.
        platform["tiers"]["pro"]["weight"] = 3
        decide(decider, platform, docs)
        assert decider.last_evaluated == len({spec_digest(d) for d in docs.values()})
        platform["regions"]["eu-west-1"]["pools"][0]["replicas"] = 3
        decide(decider, platform, docs)
        assert decider.last_evaluated == len({spec_digest(d) for d in docs.values()})
        rego = policy / "pii" / "pii.rego"
        rego.write_text(rego.read_text() + "\n# an edit\n")
        decide(decider, platform, docs)
        assert decider.last_evaluated == len({spec_digest(d) for d in docs.values()})
    finally:
        engine.close()


def test_a_reload_after_one_tenant_file_edit_evaluates_one(policy: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", 30)
    for i, path in enumerate(sorted((config / "tenants").glob("*.yaml"))):  # every spec distinct
        spec = yaml.safe_load(path.read_text())
        spec["quotas"]["tokens_per_minute"] = 1000 + i
        path.write_text(yaml.safe_dump(spec))
    files = TenantFileCache()
    decider = decider_for(PolicySettings(), policy)
    load_config(config, files, policy_dir=policy)
    assert decider.last_evaluated == 30
    edited = config / "tenants" / "t00003.yaml"
    edited.write_text(edited.read_text().replace("tokens_per_minute: 1003", "tokens_per_minute: 5"))
    cfg = load_config(config, files, policy_dir=policy)
    assert decider.last_evaluated == 1
    assert cfg.tenants["t00003"].quotas.tokens_per_minute == 5


def test_many_tenants_over_a_regions_gpus_get_one_short_message_and_the_full_list(tmp_path: Path) -> None:
    # 6,000 pro tenants guaranteed 1 GPU each in us-east-1, and three enterprise ones guaranteed 4.
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config", ignore=shutil.ignore_patterns("tenants")))
    (config / "tenants").mkdir()
    for i in range(6003):
        big = i >= 6000
        spec = {"id": f"t{i:05d}", "tier": "enterprise" if big else "pro",
                "regions": {"home": "us-east-1", "allowed": ["us-east-1"]},
                "quotas": {"gpus": 4 if big else 1}, "models": {"classifier": {"split": {"v1": 100}}}}
        (config / "tenants" / f"t{i:05d}.yaml").write_text(yaml.safe_dump(spec))
    section, _ = check_config(config)
    [over] = [v for v in section.violations if v.rule == "gpu-guarantees-exceed-capacity"]
    assert len(over.message) < 300, over.message
    # The largest guarantees first, then the count of the rest.
    assert re.fullmatch(r"region us-east-1 guarantees 6012 GPUs \(t06000=4, t06001=4, t06002=4, t00000=1, "
                        r"t00001=1 and 5,998 more\) but its pools have 4: add GPU pool replicas in regions.yaml "
                        r"or lower tenants' quotas.gpus", over.message), over.message
    assert len(over.subjects) == 6003 and over.subjects[:3] == ("t06000=4", "t06001=4", "t06002=4")
    from xds_server.policy.check import Report

    report = Report([section])
    [listed] = [v for v in report.to_json()["sections"][0]["violations"] if v["rule"] == over.rule]
    assert {s.split("=")[0] for s in listed["subjects"]} == {f"t{i:05d}" for i in range(6003)}
    assert max(len(line) for line in report.render().splitlines()) < 300
    # `fairshare validate --json` keeps the whole list too, where its text shows the first few.
    from xds_server.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        load_config(config)
    [problem] = [p for p in refused.value.to_json()["problems"] if "gpu-guarantees-exceed-capacity" in p["message"]]
    assert problem["subjects"] == list(over.subjects)
    assert "and 5,998 more" in refused.value.render()
