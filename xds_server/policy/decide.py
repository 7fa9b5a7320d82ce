"""Ask the policies for every tenant's decisions: what the compiler builds from, and what is denied.

Incremental: after the first decision only the tenants whose document changed are evaluated again.
The policies answer in two steps (policy/tenant/tenant.rego):

- `entries`: what depends on one tenant's document alone (and the platform): its decision, its own
  violations and adjustments, and its `claim` (what it contributes to fleet-wide checks, e.g. the GPUs
  it is guaranteed and where). These are remembered by the document's digest for as long as the
  policies and the platform stay the same, so a tenant edit evaluates one document and a policy or
  platform edit (tiers, regions, models) evaluates every one again.
- `fleet`: what depends on every tenant (the GPUs guaranteed in a region, summed over its tenants),
  read only from the claims. Equal claims are sent once with their `members`, so 10,000 tenants on a
  handful of guarantees are a handful of entries; the answer is remembered by the claims' digest.

`result` answers both at once for a whole config; the two steps answer exactly the same
(tests/policy/test_incremental.py proves it over random edits, on both engines).

Tenants whose documents are identical share one entry (thousands of tenants on a tier's defaults
cost one evaluation); a tenant with own models keeps its id in its document (whether an artifact is
under the tenant's own prefix depends on who the tenant is), so it is an entry of its own.

A decision can also be updated by the tenants that changed alone (`decide_changed`), from the
`Standing` a decision without violations left: at 100,000 tenants one edit then costs its own
evaluation, not a walk over every tenant.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.listing import capped
from xds_server.policy.engine import ENTRIES, FLEET, PolicyEngine, PolicyError
from xds_server.policy.sources import PolicySources

# Where a policy message lists many things (tenants, models, resources): the violation's `subjects`
# keep them all, and the message shows the first few of them, then how many more (xds_server/listing.py).
SUBJECTS = "{subjects}"

# Fleet-wide answers kept: the control plane's current claims and a few others (e.g. a report asking
# about one tenant) without pushing them out.
_FLEET_ANSWERS = 4


@dataclass(frozen=True, order=True)
class Violation:
    concern: str
    rule: str
    subject: str
    field: str
    message: str
    subjects: tuple[str, ...] = ()  # every item the message lists (it shows the first few)

    @classmethod
    def of(cls, raw: dict[str, Any], concern: str | None = None) -> Violation:
        listed = raw.get("subjects")
        subjects = tuple(str(s) for s in listed) if isinstance(listed, list) else ()
        message = str(raw.get("message", ""))
        if subjects:
            message = message.replace(SUBJECTS, capped(subjects))
        return cls(concern=str(raw.get("concern", concern or "")), rule=str(raw.get("rule", "")),
                   subject=str(raw.get("subject", "")), field=str(raw.get("field", "")),
                   message=message, subjects=subjects)

    def about(self, subject: str) -> Violation:
        return Violation(self.concern, self.rule, subject, self.field, self.message, self.subjects)


@dataclass(frozen=True)
class Decisions:
    tenants: dict[str, dict[str, Any]]  # tenant id -> {weight, quotas, routes, pii, own_routes}
    violations: list[Violation]
    adjustments: list[Violation]
    revision: str  # the policy revision that decided


@dataclass(frozen=True)
class _Entry:
    """The policies' answers about one tenant document, for whichever tenants have it: violations and
    adjustments are kept without a subject and given each tenant's id when reported."""

    decision: dict[str, Any] | None  # None: denied (its violations say why)
    violations: tuple[Violation, ...]
    adjustments: tuple[Violation, ...]
    claim: dict[str, Any] | None
    claim_key: str


@dataclass
class Standing:
    """What a decision without violations leaves for `PolicyDecider.decide_changed` to update by the
    tenants that changed, instead of walking every tenant: each tenant's document digest, the answers
    for every digest some tenant has, and who claims what. The fleet-wide answer for these claims is
    no violation (a decision with one leaves no standing)."""

    loaded: tuple[str, str]  # (policy revision, platform digest) the answers are about
    digests: dict[str, str]  # tenant id -> its document's digest
    entries: dict[str, _Entry]  # digest -> the answers about it
    counts: dict[str, int]  # digest -> how many tenants have it (its entry goes with the last)
    claims: dict[str, tuple[dict[str, Any], set[str]]]  # claim_key -> the claim and the tenants making it
    # False once an update failed or found a violation: the standing no longer describes a config
    # without violations, and only a full decision makes another.
    current: bool = True

    def leave(self, tenant_id: str) -> str | None:
        """Take the tenant out; its claim_key (None: it had no claim, or was not here)."""
        key = self.digests.pop(tenant_id, None)
        if key is None:
            return None
        entry = self.entries[key]
        self.counts[key] -= 1
        if not self.counts[key]:
            del self.counts[key], self.entries[key]
        return self._unclaim(tenant_id, entry)

    def join(self, tenant_id: str, key: str, entry: _Entry) -> str | None:
        """Put the tenant in with this document; its claim_key (None: no claim)."""
        self.digests[tenant_id] = key
        self.entries[key] = entry
        self.counts[key] = self.counts.get(key, 0) + 1
        if entry.claim is None:
            return None
        self.claims.setdefault(entry.claim_key, (entry.claim, set()))[1].add(tenant_id)
        return entry.claim_key

    def _unclaim(self, tenant_id: str, entry: _Entry) -> str | None:
        if entry.claim is None:
            return None
        members = self.claims[entry.claim_key][1]
        members.discard(tenant_id)
        if not members:
            del self.claims[entry.claim_key]
        return entry.claim_key


@dataclass
class PolicyDecider:
    """Loads policy/ into an engine (again whenever a policy file or the platform changes) and asks it
    for decisions, evaluating only tenant documents it has not answered for these policies and platform."""

    engine: PolicyEngine
    policy_dir: Path
    _loaded: tuple[str, str] | None = None  # (policy revision, platform digest) the engine holds
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Per-document answers by the document's digest, least recently used first.
    _entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _fleet: OrderedDict[str, tuple[Violation, ...]] = field(default_factory=OrderedDict)
    _largest: int = 0  # the most documents one decision has used since the policies were loaded
    last_seconds: float = 0.0  # how long the last decision took: reported by the control plane and bench/
    last_evaluated: int = 0  # tenant documents the last decision evaluated (the rest were remembered)
    last_fleet_evaluated: int = 0  # claims the last decision's fleet-wide check was asked about (0: remembered)

    def decide(self, platform: dict[str, Any], tenants: dict[str, dict[str, Any]],
               digests: dict[str, str] | None = None) -> Decisions:
        """`platform`: tiers, regions, models as the policies read them at data.fairshare.platform;
        `tenants`: id -> document (without the id, unless the tenant has own models); `digests`: their
        `spec_digest`s where the caller keeps them. Raises PolicyError when the policies cannot answer."""
        return self._decide(platform, tenants, digests, record=False)[0]

    def decide_standing(self, platform: dict[str, Any], tenants: dict[str, dict[str, Any]],
                        digests: dict[str, str] | None = None) -> tuple[Decisions, Standing | None]:
        """`decide`, and the standing `decide_changed` can update (None when there are violations)."""
        return self._decide(platform, tenants, digests, record=True)

    def decide_changed(self, platform: dict[str, Any], standing: Standing,
                       changed: dict[str, tuple[dict[str, Any], str] | None]) -> Decisions | None:
        """Update `standing` by the tenants that changed since (id -> (document, digest), None: removed)
        and decide for them: their decisions and adjustments, and every violation of the whole config
        (the rest had none). Work follows the changed tenants; the fleet-wide check is asked again only
        when a claim changed. None when the standing is not current or the policies or the platform
        changed since (a full `decide` is the answer then); raises PolicyError as `decide` does."""
        started = time.perf_counter()
        with self._lock:
            if not standing.current:
                return None
            sources = PolicySources.load(self.policy_dir, self.engine.name)
            loaded = (sources.revision, spec_digest(platform))
            if loaded != standing.loaded:
                return None
            standing.current = False  # until this update is complete and finds no violation
            self._load(sources, platform, loaded)
            present = {tid: found for tid, found in changed.items() if found is not None}
            named = {key: tid for tid, (_, key) in present.items()}
            missing = {key: tid for key, tid in named.items()
                       if key not in self._entries and key not in standing.entries}
            if missing:
                self._evaluate({tid: (key, present[tid][0]) for key, tid in missing.items()})
            self.last_evaluated = len(missing)
            entries: dict[str, _Entry] = {}
            for key in named:
                if key not in self._entries:  # kept by the standing after `_entries` let it go
                    self._entries[key] = standing.entries[key]
                self._entries.move_to_end(key)
                entries[key] = self._entries[key]
            claims_changed = False
            for tid in changed:
                before = standing.leave(tid)
                after = standing.join(tid, present[tid][1], entries[present[tid][1]]) if tid in present else None
                claims_changed |= before != after
            self.last_fleet_evaluated = 0
            # Unchanged claims: the standing's fleet-wide answer, no violation, without rebuilding the document.
            fleet = self._fleet_answer(standing.claims) if claims_changed else ()
            self._forget_unused(len(standing.counts))
            out = self._decisions(((entries[key], (tid,)) for tid, (_, key) in present.items()), fleet,
                                  sources.revision)
            standing.current = not out.violations
        self.last_seconds = time.perf_counter() - started
        return out

    def _decide(self, platform: dict[str, Any], tenants: dict[str, dict[str, Any]], digests: dict[str, str] | None,
                record: bool) -> tuple[Decisions, Standing | None]:
        started = time.perf_counter()
        with self._lock:
            sources = PolicySources.load(self.policy_dir, self.engine.name)
            loaded = (sources.revision, spec_digest(platform))
            self._load(sources, platform, loaded)
            groups: dict[str, list[str]] = {}
            for tenant_id in tenants:
                key = digests[tenant_id] if digests is not None else spec_digest(tenants[tenant_id])
                groups.setdefault(key, []).append(tenant_id)
            missing = {key: ids[0] for key, ids in groups.items() if key not in self._entries}
            if missing:
                self._evaluate({name: (key, tenants[name]) for key, name in missing.items()})
            self.last_evaluated = len(missing)
            entries: dict[str, _Entry] = {}
            for key in groups:
                self._entries.move_to_end(key)
                entries[key] = self._entries[key]
            claims = self._claims(groups, entries)
            fleet = self._fleet_answer(claims)
            self._forget_unused(len(groups))
        out = self._decisions(((entries[key], ids) for key, ids in groups.items()), fleet, sources.revision)
        standing = None
        if record and not out.violations:
            standing = Standing(
                loaded, dict(digests) if digests is not None else {t: k for k, ids in groups.items() for t in ids},
                entries, {key: len(ids) for key, ids in groups.items()},
                {ck: (claim, set(members)) for ck, (claim, members) in claims.items()})
        self.last_seconds = time.perf_counter() - started
        return out, standing

    def _decisions(self, answered: Iterable[tuple[_Entry, Sequence[str]]], fleet: tuple[Violation, ...],
                   revision: str) -> Decisions:
        """The decisions for these tenants (each entry with the tenants whose document it answers), with every
        violation and adjustment named for each tenant, and the fleet-wide violations."""
        decisions: dict[str, dict[str, Any]] = {}
        violations: list[Violation] = list(fleet)
        adjustments: list[Violation] = []
        for entry, ids in answered:
            if entry.decision is None:
                if not entry.violations:  # denied anyway: its violations say why, which "no decision" would hide
                    raise PolicyError(self.engine.name, ENTRIES, f"no decision for tenant {ids[0]}")
            else:
                decisions.update(dict.fromkeys(ids, entry.decision))
            # A violation about one document is about every tenant that has it.
            violations += [v.about(m) for v in entry.violations for m in ids]
            adjustments += [a.about(m) for a in entry.adjustments for m in ids]
        return Decisions(decisions, sorted(set(violations)), sorted(set(adjustments)), revision)

    def _load(self, sources: PolicySources, platform: dict[str, Any], loaded: tuple[str, str]) -> None:
        if self._loaded != loaded:
            self._loaded = None  # a failed load must not leave a half-loaded engine marked current
            self._entries.clear()  # answers of other policies, or about another platform
            self._fleet.clear()
            self._largest = 0
            self.engine.load(sources, platform)
            self._loaded = loaded

    def _evaluate(self, named: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """Ask the policies about these documents (entry name -> (digest, document)) and remember the answers."""
        answer = self.engine.query(ENTRIES, {"tenants": {name: doc for name, (_, doc) in named.items()}})
        parts = ("decisions", "claims")
        if not isinstance(answer, dict) or not all(isinstance(answer.get(p), dict) for p in parts):
            raise PolicyError(self.engine.name, ENTRIES, f"the policies gave no decisions ({self._hint()})")
        about: dict[str, dict[str, list[Violation]]] = {name: {"violations": [], "adjustments": []}
                                                        for name in named}
        for part in ("violations", "adjustments"):
            for raw in answer.get(part) or []:
                found = Violation.of(raw if isinstance(raw, dict) else {})
                if found.subject not in about:
                    # Only the fleet step sees every tenant; a rule here that names something else would
                    # be reported for the wrong tenants, or lost, once answers are remembered.
                    raise PolicyError(self.engine.name, ENTRIES, (
                        f"{part[:-1]} {found.concern}/{found.rule} is about {found.subject!r}, not a tenant "
                        "the policies were asked about: a rule over many tenants belongs in "
                        "data.fairshare.tenant.fleet, reading their claims"))
                about[found.subject][part].append(found.about(""))
        for name, (key, _) in named.items():
            claim = answer["claims"].get(name)
            self._entries[key] = _Entry(
                decision=answer["decisions"].get(name), violations=tuple(about[name]["violations"]),
                adjustments=tuple(about[name]["adjustments"]), claim=claim,
                claim_key=spec_digest(claim) if claim is not None else "")

    @staticmethod
    def _claims(groups: dict[str, list[str]],
                entries: dict[str, _Entry]) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """Every tenant's claim, equal claims once with their members."""
        claims: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for key, ids in groups.items():
            entry = entries[key]
            if entry.claim is not None:
                claims.setdefault(entry.claim_key, (entry.claim, []))[1].extend(ids)
        return claims

    def _fleet_answer(self, claims: Mapping[str, tuple[dict[str, Any], Collection[str]]]) -> tuple[Violation, ...]:
        """The fleet-wide checks over these claims (claim_key -> claim, members)."""
        document = {"claims": {ck: {**claim, "members": sorted(members)}
                               for ck, (claim, members) in sorted(claims.items())}}
        key = spec_digest(document)
        hit = self._fleet.get(key)
        self.last_fleet_evaluated = 0
        if hit is None:
            raw = self.engine.query(FLEET, document)
            if not isinstance(raw, list):
                raise PolicyError(self.engine.name, FLEET, f"the policies gave no fleet-wide answer ({self._hint()})")
            hit = self._fleet[key] = tuple(Violation.of(v if isinstance(v, dict) else {}) for v in raw)
            self.last_fleet_evaluated = len(claims)
            while len(self._fleet) > _FLEET_ANSWERS:
                self._fleet.popitem(last=False)
        self._fleet.move_to_end(key)
        return hit

    def _hint(self) -> str:
        return f"is {self.policy_dir / 'tenant' / 'tenant.rego'} there, with `entries` and `fleet`?"

    def _forget_unused(self, used: int) -> None:
        # Room for twice the largest config decided (so an edit's old and new documents, or a report
        # asking about one tenant, never push out what the next reload needs); the least recent go first.
        self._largest = max(self._largest, used)
        while len(self._entries) > 2 * self._largest + 64:
            self._entries.popitem(last=False)


def spec_digest(value: Any) -> str:
    """A content key for a JSON document: equal documents, equal keys."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=12).hexdigest()
