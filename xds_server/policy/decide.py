"""Ask the policies for every tenant's decisions: what the compiler builds from, and what is denied.

Tenants whose specs are identical apart from their id get one decision: the policy sees one entry
whose `members` lists them all (thousands of tenants on a tier's defaults cost one evaluation).

A tenant's own models are the exception to sharing: whether an artifact is under the tenant's own
prefix depends on who the tenant is, so a tenant with own models is evaluated alone, with its id. Its
own-model part (data.fairshare.models: its own-model routes and violations) depends on nothing but
that tenant's document and the platform, so it is remembered by the document's digest for as long as
the policies and the platform stay the same; the next reload puts the tenant to the policies without
its own models and id, shared with every tenant of the same spec, and adds what was remembered. A
tenant whose own-model spec did not change is therefore not evaluated again (at 100 such tenants an
unrelated edit cost 0.1 s more than without them).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.policy.engine import DECISIONS, PolicyEngine, PolicyError
from xds_server.policy.sources import PolicySources

# The part of a tenant's decision, and the concern of its violations, that data.fairshare.models
# decides from that tenant alone (policy/tenant/tenant.rego composes it as `own_routes`).
OWN_DECISION = "own_routes"
OWN_CONCERN = "models"


@dataclass(frozen=True, order=True)
class Violation:
    concern: str
    rule: str
    subject: str
    field: str
    message: str

    @classmethod
    def of(cls, raw: dict[str, Any], concern: str | None = None) -> Violation:
        return cls(concern=str(raw.get("concern", concern or "")), rule=str(raw.get("rule", "")),
                   subject=str(raw.get("subject", "")), field=str(raw.get("field", "")),
                   message=str(raw.get("message", "")))

    def about(self, subject: str) -> Violation:
        return Violation(self.concern, self.rule, subject, self.field, self.message)


@dataclass(frozen=True)
class Decisions:
    tenants: dict[str, dict[str, Any]]  # tenant id -> {weight, quotas, routes, pii}
    violations: list[Violation]
    adjustments: list[Violation]
    revision: str  # the policy revision that decided


@dataclass(frozen=True)
class _Remembered:
    """One own-model tenant's part of a decision, as the policies answered for its document."""

    own_routes: Any
    violations: tuple[Violation, ...]


@dataclass
class PolicyDecider:
    """Loads policy/ into an engine (again whenever a policy file or the platform changes) and asks it
    for decisions."""

    engine: PolicyEngine
    policy_dir: Path
    _loaded: tuple[str, str] | None = None  # (policy revision, platform digest) the engine holds
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Own-model tenants' part of their decisions by document digest, for the loaded policies and platform.
    _own: dict[str, _Remembered] = field(default_factory=dict)
    last_seconds: float = 0.0  # how long the last decision took: reported by the control plane and bench/
    last_evaluated: int = 0  # distinct tenant specs the last decision evaluated

    def decide(self, platform: dict[str, Any], tenants: dict[str, dict[str, Any]],
               digests: dict[str, str] | None = None,
               shared: dict[str, tuple[dict[str, Any], str]] | None = None) -> Decisions:
        """`platform`: tiers, regions, models as the policies read them at data.fairshare.platform;
        `tenants`: id -> spec (without the id, unless the tenant has own models); `digests`: their
        `spec_digest`s where the caller keeps them; `shared`: for each tenant with own models, its
        spec without the own models and the id, with its digest (what the policies are given once its
        own-model part is remembered). Raises PolicyError when the policies cannot answer."""
        started = time.perf_counter()
        with self._lock:
            sources = PolicySources.load(self.policy_dir)
            loaded = (sources.revision, spec_digest(platform))
            if self._loaded != loaded:
                self._loaded = None  # a failed load must not leave a half-loaded engine marked current
                self._own = {}  # answers of other policies, or about another platform
                self.engine.load(sources, platform)
                self._loaded = loaded
            groups: dict[str, list[str]] = {}
            specs: dict[str, dict[str, Any]] = {}
            full: dict[str, str] = {}  # own-model tenant -> its whole document's digest
            remembered: dict[str, _Remembered] = {}
            for tenant_id, spec in tenants.items():
                key = digests[tenant_id] if digests is not None else spec_digest(spec)
                if shared is not None and tenant_id in shared:
                    full[tenant_id] = key
                    hit = self._own.get(key)
                    if hit is not None:
                        remembered[tenant_id] = hit
                        spec, key = shared[tenant_id]
                groups.setdefault(key, []).append(tenant_id)
                specs.setdefault(key, spec)
            members = {ids[0]: ids for ids in groups.values()}
            result = self.engine.query(DECISIONS, {"tenants": {
                ids[0]: {**specs[key], "members": ids} for key, ids in groups.items()
            }})
            self.last_evaluated = len(groups)
            if not isinstance(result, dict) or not isinstance(result.get("decisions"), dict):
                raise PolicyError(self.engine.name, DECISIONS,
                                  "the policies gave no decisions (is policy/tenant/tenant.rego there?)")
            accused = {str(v.get("subject")) for v in result.get("violations") or [] if isinstance(v, dict)}
            decisions: dict[str, dict[str, Any]] = {}
            for first, ids in members.items():
                decided = result["decisions"].get(first)
                if decided is None:
                    if first in accused:
                        continue  # denied anyway: its violations say why, which "no decision" would hide
                    raise PolicyError(self.engine.name, DECISIONS, f"no decision for tenant {first}")
                decisions.update(dict.fromkeys(ids, decided))
            for tenant_id, hit in remembered.items():
                if tenant_id in decisions:
                    decisions[tenant_id] = {**decisions[tenant_id], OWN_DECISION: hit.own_routes}

            def expand(raw: list[Any]) -> list[Violation]:
                # A violation about one entry is about every tenant that shares its spec.
                found = [Violation.of(v) for v in raw]
                return sorted({f.about(m) for f in found for m in members.get(f.subject, [f.subject])})

            violations = expand(result.get("violations") or [])
            fresh: dict[str, _Remembered] = {}
            for tenant_id, key in full.items():
                hit = remembered.get(tenant_id)
                if hit is None and tenant_id in decisions and OWN_DECISION in decisions[tenant_id]:
                    hit = _Remembered(decisions[tenant_id][OWN_DECISION], tuple(
                        v for v in violations if v.concern == OWN_CONCERN and v.subject == tenant_id))
                if hit is not None:
                    fresh[key] = hit
            self._own = fresh  # only what the current tenants use
            for hit in remembered.values():
                violations.extend(hit.violations)
        out = Decisions(decisions, sorted(set(violations)), expand(result.get("adjustments") or []),
                        sources.revision)
        self.last_seconds = time.perf_counter() - started
        return out


def spec_digest(value: Any) -> str:
    """A content key for a JSON document: equal documents, equal keys."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=12).hexdigest()
