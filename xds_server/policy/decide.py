"""Ask the policies for every tenant's decisions: what the compiler builds from, and what is denied.

Tenants whose specs are identical apart from their id get one decision: the policy sees one entry
whose `members` lists them all (thousands of tenants on a tier's defaults cost one evaluation), and
decisions are remembered across reloads by spec content, policy revision and platform context.
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


@dataclass
class PolicyDecider:
    """Loads policy/ into an engine (again whenever a policy file or the platform changes) and asks it
    for decisions."""

    engine: PolicyEngine
    policy_dir: Path
    _loaded: tuple[str, str] | None = None  # (policy revision, platform digest) the engine holds
    _lock: threading.Lock = field(default_factory=threading.Lock)
    last_seconds: float = 0.0  # how long the last decision took: reported by the control plane and bench/
    last_evaluated: int = 0  # distinct tenant specs the last decision evaluated

    def decide(self, platform: dict[str, Any], tenants: dict[str, dict[str, Any]],
               digests: dict[str, str] | None = None) -> Decisions:
        """`platform`: tiers, regions, models as the policies read them at data.fairshare.platform;
        `tenants`: id -> spec (without the id); `digests`: their `spec_digest`s where the caller keeps
        them. Raises PolicyError when the policies cannot answer."""
        started = time.perf_counter()
        with self._lock:
            sources = PolicySources.load(self.policy_dir)
            loaded = (sources.revision, spec_digest(platform))
            if self._loaded != loaded:
                self._loaded = None  # a failed load must not leave a half-loaded engine marked current
                self.engine.load(sources, platform)
                self._loaded = loaded
            groups: dict[str, list[str]] = {}
            specs: dict[str, dict[str, Any]] = {}
            for tenant_id, spec in tenants.items():
                key = digests[tenant_id] if digests is not None else spec_digest(spec)
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

        def expand(raw: list[Any]) -> list[Violation]:
            # A violation about one entry is about every tenant that shares its spec.
            found = [Violation.of(v) for v in raw]
            return sorted({f.about(m) for f in found for m in members.get(f.subject, [f.subject])})

        out = Decisions(decisions, expand(result.get("violations") or []),
                        expand(result.get("adjustments") or []), sources.revision)
        self.last_seconds = time.perf_counter() - started
        return out


def spec_digest(value: Any) -> str:
    """A content key for a JSON document: equal documents, equal keys."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=12).hexdigest()
