"""A reload told which tenants changed (policy/resolve.py `resolve_changed`) resolves only those: it answers
exactly what a full `resolve_tenants` would, handing back the very objects of the tenants that did not
change, and evaluates only documents the policies have not answered; or it answers None, and the caller
runs `resolve_tenants`, which reports any violation as before."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench.synth import REPO_CONFIG, TIERS, tenant_id, tenant_spec
from xds_server.config import load_config
from xds_server.config.loader import TenantFileCache
from xds_server.config.model import (
    Platform,
    PlatformConfig,
    PolicyBackend,
    PolicySettings,
    ResolvedTenant,
    Tenant,
    Tier,
)
from xds_server.policy import backends
from xds_server.policy.backends import DEFAULT_POLICY_DIR, decider_for
from xds_server.policy.decide import PolicyDecider, spec_digest
from xds_server.policy.engine import ENTRIES
from xds_server.policy.resolve import (
    PolicyViolations,
    platform_document,
    resolve_changed,
    resolve_tenants,
    tenant_document,
)

Tenants = dict[str, tuple[Tenant, Path]]
Resolved = Mapping[str, ResolvedTenant]


@pytest.fixture(scope="module")
def config() -> PlatformConfig:
    return load_config(REPO_CONFIG)


def _policy_copy(target: Path) -> Iterator[Path]:
    path = Path(shutil.copytree(DEFAULT_POLICY_DIR, target, ignore=shutil.ignore_patterns("*_test.rego")))
    yield path
    # Each copy gets deciders (and engine worker processes) of its own: end them with the test.
    for key in [k for k in backends._deciders if k[0] == str(path)]:
        backends._deciders.pop(key).engine.close()


@pytest.fixture
def policy(tmp_path: Path) -> Iterator[Path]:
    yield from _policy_copy(tmp_path / "policy")


@pytest.fixture
def reference_policy(tmp_path: Path) -> Iterator[Path]:
    """The same policies for the reference resolves: a decider of their own, so the walk's evaluations are its own."""
    yield from _policy_copy(tmp_path / "reference")


def tenant(spec: dict[str, Any]) -> tuple[Tenant, Path]:
    t = Tenant.model_validate(spec)
    return t, Path(f"/config/tenants/{t.id}.yaml")


def variant(rng: random.Random, tid: str) -> dict[str, Any]:
    """One edit of one of four base specs: few enough documents that they repeat (tenants join and leave
    each other's entries), GPU guarantees among them (the fleet-wide check's claims change and, past a
    region's 4 GPUs, are denied) and a weight above every tier (the tenant is denied)."""
    spec: dict[str, Any] = {**tenant_spec(rng.randrange(4)), "id": tid}
    what = rng.choice(["split", "tokens", "gpus", "gpus", "tier", "regions", "weight"])
    if what == "split":
        v1 = rng.choice([0, 50, 100])
        spec["models"] = {"classifier": {"split": {"v1": v1, "v2": 100 - v1}}}
    elif what == "tokens":
        spec["quotas"] = {"gpus": 0, "tokens_per_minute": rng.choice([1000, 5000])}
    elif what == "gpus":
        spec["quotas"] = {"gpus": rng.choice([1, 2])}
    elif what == "tier":
        spec["tier"] = rng.choice(TIERS)
    elif what == "regions":
        spec["regions"] = {"home": "us-east-1", "allowed": rng.choice([["us-east-1"], ["us-east-1", "eu-west-1"]])}
    else:
        spec["weight"] = rng.choice([1, 5])
    return spec


class Walk:
    """Tenants edited, added and removed; each step checked against a full resolve on fresh files."""

    def __init__(self, config: PlatformConfig, platform: Platform, policy: Path, reference: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.config, self.platform, self.policy, self.reference = config, platform, policy, reference
        self.files = TenantFileCache()
        self.tenants: Tenants = {tenant_id(i): tenant(tenant_spec(i)) for i in range(40)}
        self.decider = decider_for(platform.policy, policy)
        assert isinstance(self.decider, PolicyDecider)
        self.asked = 0  # tenant documents the engine was asked about
        query = self.decider.engine.query

        def counted(path: str, input: Any) -> Any:
            if path == ENTRIES:
                self.asked += len(input["tenants"])
            return query(path, input)

        monkeypatch.setattr(self.decider.engine, "query", counted)
        self.previous = self.full(self.tenants)
        self.seen = self.digests(self.tenants)  # every document the walk's decider has answered
        self.incremental = self.denied = 0
        self.rules: set[str] = set()  # why steps were denied

    def full(self, tenants: Tenants, policy: Path | None = None, files: TenantFileCache | None = None) -> Resolved:
        c = self.config
        return resolve_tenants(REPO_CONFIG, self.platform, c.tiers, c.regions, c.models, tenants,
                               policy or self.policy, files or self.files)

    def changed(self, tenants: Tenants, changed: frozenset[str], previous: Resolved | None = None) -> Resolved | None:
        c = self.config
        return resolve_changed(REPO_CONFIG, self.platform, c.tiers, c.regions, c.models, tenants, changed,
                               self.previous if previous is None else previous, self.policy, self.files)

    @staticmethod
    def digests(tenants: Tenants) -> set[str]:
        return {spec_digest(tenant_document(t)) for t, _ in tenants.values()}

    def step(self, rng: random.Random, n: int) -> None:
        before = self.tenants
        tenants = dict(before)
        kind = rng.choice(["edit", "edit", "edit", "edits", "added", "removed", "both"])
        changed: set[str] = set()
        if kind in ("edit", "edits"):
            for tid in rng.sample(sorted(tenants), 1 if kind == "edit" else 3):
                tenants[tid] = tenant(variant(rng, tid))
                changed.add(tid)
        if kind in ("removed", "both"):
            tid = rng.choice(sorted(tenants))
            del tenants[tid]
            changed.add(tid)
        if kind in ("added", "both"):
            # Half the time a copy of another tenant's spec: it joins that document's entry. Its id sorts
            # among the others, not after them.
            tid = f"{tenant_id(rng.randrange(40))}-{n}"
            copied = tenants[rng.choice(sorted(tenants))][0].model_dump(exclude_none=True)
            tenants[tid] = tenant({**copied, "id": tid} if rng.random() < 0.5 else variant(rng, tid))
            tenants = dict(sorted(tenants.items()))
            changed.add(tid)
        new = {spec_digest(tenant_document(tenants[t][0])) for t in changed if t in tenants}
        asked, answered = self.asked, list(self.previous.items())
        got = self.changed(tenants, frozenset(changed))
        evaluated = self.asked - asked
        # The last answer is the config still served (and what the audit trail compares with): left as it was.
        assert list(self.previous.items()) == answered, f"step {n} ({kind})"
        try:
            want = self.full(tenants, self.reference, TenantFileCache())
        except PolicyViolations as denied:
            # Denied: no answer here, and the full resolve the caller runs then says why, as before.
            assert got is None, f"step {n} ({kind})"
            self.rules |= {v.rule for v in denied.violations}
            with pytest.raises(PolicyViolations):
                self.full(tenants)
            self.seen |= self.digests(tenants)
            self.previous = self.full(before)  # the edit is not taken; the last good config is resolved again
            self.denied += 1
            return
        assert got is not None, f"step {n} ({kind}): a config without violations is answered incrementally"
        assert got == want and list(got) == list(want), f"step {n} ({kind})"
        assert all(got[t] is self.previous[t] for t in got if t not in changed), f"step {n} ({kind})"
        assert self.decider.last_evaluated == evaluated == len(new - self.seen), f"step {n} ({kind})"
        self.seen |= new
        self.tenants, self.previous = tenants, got
        self.incremental += 1

    def walk(self, steps: int, seed: int) -> None:
        rng = random.Random(seed)
        for n in range(steps):
            self.step(rng, n)
        assert self.incremental >= steps // 2, (self.incremental, self.denied)
        # Few enough documents that the decider remembered every one: each was evaluated once.
        assert len(self.seen) <= 64


def test_resolving_the_changed_tenants_equals_a_full_resolve_over_random_edits(
        config: PlatformConfig, policy: Path, reference_policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walk = Walk(config, config.platform, policy, reference_policy, monkeypatch)
    walk.walk(steps=60, seed=3)
    # Denied for a tenant's own document, and by the fleet-wide check over every tenant's GPU guarantees.
    assert {"weight-above-tier", "gpu-guarantees-exceed-capacity"} <= walk.rules, walk.rules


def test_resolving_the_changed_tenants_on_opa_equals_a_full_resolve(
        opa_url: str, config: PlatformConfig, policy: Path, reference_policy: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    platform = config.platform.model_copy(
        update={"policy": PolicySettings(backend=PolicyBackend.OPA, opa_url=opa_url)})
    Walk(config, platform, policy, reference_policy, monkeypatch).walk(steps=20, seed=8)


def edited(walk: Walk, tid: str, **changes: Any) -> Tenants:
    t, _ = walk.tenants[tid]
    return {**walk.tenants, tid: tenant({**t.model_dump(mode="json", exclude_none=True), **changes})}


def test_no_answer_after_a_policy_edit(config: PlatformConfig, policy: Path, reference_policy: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    walk = Walk(config, config.platform, policy, reference_policy, monkeypatch)
    rego = policy / "pii" / "pii.rego"
    rego.write_text(rego.read_text() + "\n# an edit\n")
    tenants = edited(walk, "t00003", weight=1.5)
    assert walk.changed(tenants, frozenset({"t00003"})) is None
    walk.tenants, walk.previous = tenants, walk.full(tenants)
    # The full resolve leaves what the next edit builds on.
    tenants = edited(walk, "t00004", weight=1.5)
    assert walk.changed(tenants, frozenset({"t00004"})) == walk.full(tenants, reference_policy, TenantFileCache())


def test_no_answer_after_a_tier_edit(config: PlatformConfig, policy: Path, reference_policy: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    walk = Walk(config, config.platform, policy, reference_policy, monkeypatch)
    pro = config.tiers["pro"]
    tiers: dict[str, Tier] = {**config.tiers, "pro": pro.model_copy(update={"weight": pro.weight + 1})}
    tenants = edited(walk, "t00003", weight=1.5)
    assert resolve_changed(REPO_CONFIG, config.platform, tiers, config.regions, config.models, tenants,
                           frozenset({"t00003"}), walk.previous, policy, walk.files) is None


def test_no_answer_when_a_changed_tenant_is_denied(config: PlatformConfig, policy: Path, reference_policy: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    walk = Walk(config, config.platform, policy, reference_policy, monkeypatch)
    denied = edited(walk, "t00001", weight=50.0)  # above the pro tier's weight
    assert walk.changed(denied, frozenset({"t00001"})) is None
    with pytest.raises(PolicyViolations) as raised:
        walk.full(denied)
    assert [v.rule for v in raised.value.violations] == ["weight-above-tier"]
    walk.previous = walk.full(walk.tenants)
    # After a failed reload nothing is built on (what changed since is the caller's to say, about the last
    # good config or the failed one): the next one is a full resolve, then edits are incremental again.
    with pytest.raises(PolicyViolations):
        walk.full(denied)
    fixed = edited(walk, "t00001", weight=1.0)
    assert walk.changed(fixed, frozenset({"t00001"})) is None
    walk.tenants, walk.previous = fixed, walk.full(fixed)
    tenants = edited(walk, "t00002", weight=1.0)
    assert walk.changed(tenants, frozenset({"t00002"})) is not None


def test_no_answer_without_the_last_answer_or_for_other_tenants(
        config: PlatformConfig, policy: Path, reference_policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walk = Walk(config, config.platform, policy, reference_policy, monkeypatch)
    tenants = edited(walk, "t00003", weight=1.5)
    c = config
    assert resolve_changed(REPO_CONFIG, c.platform, c.tiers, c.regions, c.models, tenants, frozenset({"t00003"}),
                           walk.previous, policy, TenantFileCache()) is None  # files nothing was resolved through
    assert walk.changed(tenants, frozenset({"t00003"}), previous=dict(walk.previous)) is None  # an equal copy
    walk.previous = walk.full(walk.tenants)
    # An added tenant the caller did not say changed: the answer would miss it.
    added = {**tenants, "zz": tenant({**tenant_spec(1), "id": "zz"})}
    assert walk.changed(added, frozenset({"t00003"})) is None
    walk.previous = walk.full(walk.tenants)
    # A removed tenant the caller did not say changed: likewise.
    assert walk.changed({k: v for k, v in tenants.items() if k != "t00007"}, frozenset({"t00003"})) is None
    walk.previous = walk.full(walk.tenants)
    # A tenant removed, the others in another order than the last answer's: answered in that order, it would
    # be wrong. (With none added or removed the caller keeps each tenant's place, and only the count is
    # checked: comparing every id costs an edit 15 ms at 100,000 tenants.)
    reordered = {k: v for k, v in reversed(tenants.items()) if k != "t00007"}
    assert walk.changed(reordered, frozenset({"t00003", "t00007"})) is None
    walk.previous = walk.full(walk.tenants)
    assert walk.changed(tenants, frozenset({"t00003"})) == walk.full(tenants, reference_policy, TenantFileCache())


def test_the_decider_answers_nothing_from_a_standing_an_update_left_with_violations(
        config: PlatformConfig, policy: Path) -> None:
    decider = decider_for(config.platform.policy, policy)
    platform = platform_document(config.tiers, config.regions, config.models)
    docs = {tenant_id(i): tenant_document(tenant(tenant_spec(i))[0]) for i in range(6)}
    decided, standing = decider.decide_standing(platform, docs)
    assert standing is not None and not decided.violations
    denied = {**docs["t00001"], "weight": 50}
    found = decider.decide_changed(platform, standing, {"t00001": (denied, spec_digest(denied))})
    assert found is not None and [v.rule for v in found.violations] == ["weight-above-tier"]
    # It no longer describes a config without violations: only a full decision makes another.
    fixed = {**docs["t00002"], "weight": 1}
    assert decider.decide_changed(platform, standing, {"t00002": (fixed, spec_digest(fixed))}) is None


def test_an_edit_that_changes_no_claim_keeps_the_fleet_wide_answer(
        config: PlatformConfig, policy: Path, reference_policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walk = Walk(config, config.platform, policy, reference_policy, monkeypatch)
    asked: list[int] = []
    answer = walk.decider._fleet_answer

    def fleet(claims: Any) -> Any:
        asked.append(len(claims))
        return answer(claims)

    monkeypatch.setattr(walk.decider, "_fleet_answer", fleet)
    # A split: the same GPU claim, so the fleet-wide document over every tenant is not even built.
    tenants = edited(walk, "t00003", models={"classifier": {"split": {"v1": 50, "v2": 50}}})
    walk.previous = walk.changed(tenants, frozenset({"t00003"})) or {}
    assert walk.previous and asked == []
    walk.tenants = tenants
    # A GPU guarantee: a new claim, checked over every tenant's.
    tenants = edited(walk, "t00003", quotas={"gpus": 1})
    assert walk.changed(tenants, frozenset({"t00003"})) == walk.full(tenants, reference_policy, TenantFileCache())
    assert len(asked) == 1
