"""Turn a structurally valid config into resolved tenants by asking the policies.

Every effective value the compiler uses (weight, quotas, routes per region, PII rules) comes from the
policies' decisions; a config the policies deny is rejected with every violation, each naming the
tenant's file and field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from xds_server.config.errors import ConfigError, Problem
from xds_server.config.model import Model, Platform, Region, ResolvedTenant, Tenant, Tier
from xds_server.layered import Revised, as_dict
from xds_server.policy.backends import decider_for
from xds_server.policy.decide import PolicyDecider, Standing, Violation, spec_digest
from xds_server.policy.engine import PolicyError

if TYPE_CHECKING:
    from xds_server.config.loader import TenantFileCache  # the loader imports this module


class PolicyViolations(ConfigError):
    """A config the policies deny: the problems for people, the violations for `fairshare policy check`."""

    def __init__(self, problems: list[Problem], violations: list[Violation], files: dict[str, str]) -> None:
        super().__init__(problems)
        self.violations = violations
        self.files = files  # tenant id -> its file, to point a reviewer at what to change


def platform_document(tiers: dict[str, Tier], regions: dict[str, Region], models: dict[str, Model]) -> dict[str, Any]:
    """The platform as the policies read it (data.fairshare.platform): version regions made explicit."""
    return {
        "tiers": {name: tier.model_dump(mode="json", exclude_none=True) for name, tier in tiers.items()},
        "regions": {rid: {"pools": [p.model_dump(mode="json", exclude_none=True) for p in r.pools],
                          **({"model_bucket": r.model_bucket} if r.model_bucket else {})}
                    for rid, r in regions.items()},
        "models": {name: {"kind": str(m.kind), "versions": {
            v: {"pool": mv.pool, "regions": mv.regions if mv.regions is not None
                else [rid for rid, r in regions.items() if r.pool(mv.pool)]}
            for v, mv in m.versions.items()
        }} for name, m in models.items()},
    }


def tenant_document(tenant: Tenant) -> dict[str, Any]:
    """A tenant as the policies read it: its spec without the id (tenants that differ only in id share
    one evaluation). A tenant with own models keeps its id: whether an artifact is under the tenant's
    own prefix depends on who the tenant is, so two such tenants never share a decision."""
    return tenant.model_dump(mode="json", exclude_none=True, exclude=None if tenant.own_models else {"id"})


def _digested(table: dict[str, tuple[Tenant, dict[str, Any], str]], tid: str, tenant: Tenant,
              build: Callable[[Tenant], dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """`build(tenant)` and its digest, reused while the loader hands back the same Tenant object."""
    hit = table.get(tid)
    if hit is not None and hit[0] is tenant:
        return hit[1], hit[2]
    doc = build(tenant)
    digest = spec_digest(doc)
    table[tid] = (tenant, doc, digest)
    return doc, digest


@dataclass
class _Memo:
    """What a reload can reuse for a tenant whose file did not change (the loader hands back the same
    Tenant object): its policy document and digest, and its resolved form while its decision is the
    same. At 10,000 tenants this is most of what an edit of one tenant costs."""

    documents: dict[str, tuple[Tenant, dict[str, Any], str]] = field(default_factory=dict)
    resolved: dict[str, tuple[Tenant, dict[str, Any], ResolvedTenant]] = field(default_factory=dict)
    # What the last resolve through these files returned, the decider that decided it and the standing
    # it left (`resolve_changed` updates both by the tenants that changed); None after a resolve that
    # failed or that `resolve_changed` could not answer, until a full resolve succeeds.
    last: tuple[Mapping[str, ResolvedTenant], PolicyDecider, Standing] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self, tid: str, tenant: Tenant) -> tuple[dict[str, Any], str]:
        return _digested(self.documents, tid, tenant, tenant_document)

    def resolve(self, tid: str, tenant: Tenant, decided: dict[str, Any]) -> ResolvedTenant:
        hit = self.resolved.get(tid)
        if hit is not None and hit[0] is tenant and hit[1] == decided:
            return hit[2]
        resolved = ResolvedTenant(spec=tenant, weight=decided["weight"], quotas=decided["quotas"],
                                  routes=decided["routes"], pii=decided["pii"],
                                  own_routes=decided.get("own_routes", {}))
        self.resolved[tid] = (tenant, decided, resolved)
        return resolved

    def keep_only(self, present: set[str]) -> None:
        for table in (self.documents, self.resolved):
            for tid in set(table) - present:
                del table[tid]

    def forget(self, tid: str) -> None:
        self.documents.pop(tid, None)
        self.resolved.pop(tid, None)


def _memo_of(files: TenantFileCache | None) -> _Memo:
    """The memo kept with these tenant files (a fresh one without them: nothing to reuse)."""
    if files is None:
        return _Memo()
    if not isinstance(files.policy_memo, _Memo):
        files.policy_memo = _Memo()
    return files.policy_memo


def resolve_tenants(
    root: Path,
    platform: Platform,
    tiers: dict[str, Tier],
    regions: dict[str, Region],
    models: dict[str, Model],
    tenants: dict[str, tuple[Tenant, Path]],
    policy_dir: Path | None,
    files: TenantFileCache | None = None,
) -> dict[str, ResolvedTenant]:
    """`files`: the cache the tenants were loaded through, whose memo this reload may reuse."""
    decider = decider_for(platform.policy, policy_dir)
    memo = _memo_of(files)
    with memo.lock:
        memo.last = None  # whatever this resolve ends in, the last one's answer is not the current config's
        memo.keep_only(set(tenants))
        documents = {tid: memo.document(tid, t) for tid, (t, _) in tenants.items()}
    try:
        decisions, standing = decider.decide_standing(platform_document(tiers, regions, models),
                                                      {tid: doc for tid, (doc, _) in documents.items()},
                                                      {tid: digest for tid, (_, digest) in documents.items()})
    except PolicyError as err:
        raise ConfigError([err.problem()]) from None
    if decisions.violations:
        raise PolicyViolations([_problem(v, root, tenants) for v in decisions.violations], decisions.violations,
                               {tid: str(path) for tid, (_, path) in tenants.items()})
    problems: list[Problem] = []
    resolved: dict[str, ResolvedTenant] = {}
    with memo.lock:  # once, not per tenant: 100,000 acquisitions cost a reload 20-40 ms
        for tid, (tenant, path) in tenants.items():
            try:
                resolved[tid] = memo.resolve(tid, tenant, decisions.tenants[tid])
            except (ValidationError, KeyError, TypeError) as err:
                # A policy edit that decides nonsense (a negative quota, a missing field) is the policy's
                # fault, reported as such, and nothing built on it is served.
                problems.append(Problem(str(path), "", f"the policies decided values the platform cannot use: {err}"))
        if not problems and standing is not None and files is not None:
            memo.last = (resolved, decider, standing)
    if problems:
        raise ConfigError(problems)
    return resolved


def resolve_changed(
    root: Path,
    platform: Platform,
    tiers: dict[str, Tier],
    regions: dict[str, Region],
    models: dict[str, Model],
    tenants: dict[str, tuple[Tenant, Path]],
    changed: frozenset[str],
    previous: Mapping[str, ResolvedTenant],
    policy_dir: Path | None,
    files: TenantFileCache,
) -> Mapping[str, ResolvedTenant] | None:
    """What `resolve_tenants` would return for `tenants` (equal, in their order, unchanged tenants' very
    objects), in work that follows `changed`: the ids added, removed, or whose Tenant object differs
    from the last resolve through `files`, which returned `previous`. `tenants` must be in `previous`'s
    order with the removed dropped and, where some were added, sorted again.

    None where it cannot answer that way (nothing to build on, the policies or the platform changed, a
    changed tenant is denied, the fleet-wide check finds a violation, anything unexpected): the caller
    runs `resolve_tenants` then, which reports every problem as usual."""
    decider = decider_for(platform.policy, policy_dir)
    memo = _memo_of(files)
    with memo.lock:  # throughout: the standing is updated in place, and `last` must say what it describes
        last, memo.last = memo.last, None  # put back only with a complete answer
        if last is None or last[0] is not previous or last[1] is not decider:
            return None
        _, _, standing = last
        removed = [tid for tid in changed if tid not in tenants]
        added = [tid for tid in changed if tid in tenants and tid not in previous]
        if any(tid not in previous for tid in removed):
            return None
        documents = {tid: memo.document(tid, tenants[tid][0]) for tid in changed if tid in tenants}
        try:
            decisions = decider.decide_changed(platform_document(tiers, regions, models), standing,
                                               {tid: documents.get(tid) for tid in changed})
        except PolicyError:
            return None
        if decisions is None or decisions.violations or decisions.tenants.keys() != documents.keys():
            return None
        try:
            answers = {tid: memo.resolve(tid, tenants[tid][0], decided) for tid, decided in decisions.tenants.items()}
        except (ValidationError, KeyError, TypeError):
            return None
        resolved: Mapping[str, ResolvedTenant]
        if added or removed:
            table = as_dict(previous)
            for tid in removed:
                del table[tid]
                memo.forget(tid)
            table.update(answers)
            resolved = {tid: table[tid] for tid in tenants} if added else table
        else:  # an edit: the same ids in the same order, a few values replaced
            resolved = Revised.over(previous, answers)
        # The caller's promise about the ids and their order: a wrong key set or order would be a wrong answer.
        # With none added or removed, `resolved` has the last answer's ids in its order, and the caller keeps
        # each tenant's place: the same count is the check. Otherwise every id is compared, in order (15 ms at
        # 100,000 tenants: two lists built and walked, a cache miss per id).
        if (len(resolved) != len(tenants)) if not (added or removed) else (list(resolved) != list(tenants)):
            return None
        memo.last = (resolved, decider, standing)
        return resolved


def _problem(v: Violation, root: Path, tenants: dict[str, tuple[Tenant, Path]]) -> Problem:
    reason = f"{v.message} (policy {v.concern}: {v.rule})"
    if v.subject in tenants:
        return Problem(str(tenants[v.subject][1]), v.field, reason, v.subjects)
    if v.subject in ("",):
        return Problem(str(root), v.field, reason, v.subjects)
    return Problem(str(root / "regions.yaml"), f"{v.subject}: {v.field}" if v.field else v.subject, reason,
                   v.subjects)
