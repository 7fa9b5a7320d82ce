"""The control plane's side of the audit trail: one record per applied or refused change.

An applied change records where it came from (source, revision, author), the config versions, the
tenants it touched, and for each of them a decision entry modelled on OPA's decision log (decision_id,
path, input digest instead of the input, result, timestamp; `decided_by` names the policy package behind
each part) whose result holds only what changed in the tenant's effective spec (weight and quotas,
routes, catalog splits, own-model routes, own-model versions, its data class and PII rules, its cell pin
and rate-limit mode), before and after. Those are config values; a record never holds a request, a
token or a key.

Routes are rows, one per (region, model) with its versions. Splits and own-model versions are rows, one
per (model, version): a catalog split's percent; an own
version's percent, artifact digest (sha256) and location, and its model's format, base and pool. Only the
rows that changed go in a changed tenant's result (a canary step or a new digest is one or two rows, not
the tenant's every model), and model and version names stay values, never keys: a tenant's model named
`text` would otherwise be a field name the
writer refuses (xds_server/audit/log.py FORBIDDEN_KEYS), losing the whole record.

A result several tenants share (a fleet on tier defaults) is stored once in the record's `results`
under its digest and named by each entry's `result_ref`; `decision_of` reads a tenant's entry back with
its result inline.

The diff is cheap: the policy layer hands back the same ResolvedTenant object for a tenant whose file
and decision did not change, so an identity check skips it and only changed tenants are compared."""

from __future__ import annotations

import logging
import re
import subprocess
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.audit.log import AuditError, AuditLog, redact_secrets, rfc3339
from xds_server.config.model import PlatformConfig, ResolvedTenant

log = logging.getLogger("fairshare.audit")

# The document the control plane queries for every tenant (xds_server/policy/engine.py DECISIONS), and
# the policy package that decides each part of it.
DECISION_PATH = "fairshare/tenant/result"
# A split is the tenant's own, checked by residency (no traffic to a version not deployed where it is
# routed); own-model versions by the models policy (bucket, size, format).
DECIDED_BY = {"quotas": "fairshare/quota", "routes": "fairshare/residency", "splits": "fairshare/residency",
              "own_routes": "fairshare/models", "own_models": "fairshare/models", "pii": "fairshare/pii",
              "serving": "the tenant's file (no policy decides it)"}
# The parts whose values are rows keyed by (model, version): diffed row by row.
_ROW_PARTS = ("splits", "own_models")
_TENANT_FILE = re.compile(r"/tenants/([a-z][a-z0-9-]{0,40}[a-z0-9])\.ya?ml\b")


def git_source(directory: Path) -> dict[str, Any]:
    """`source: local` with the git commit (and its author) of the checkout holding `directory`, when
    it is one; `modified` says the working tree differs from that commit under `directory`."""
    out: dict[str, Any] = {"source": "local", "revision": None, "author": None}
    try:
        head = subprocess.run(["git", "-C", str(directory), "log", "-1", "--format=%H%x00%an <%ae>"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0 or "\0" not in head.stdout:
            return out
        out["revision"], out["author"] = head.stdout.strip().split("\0", 1)
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10)
        out["modified"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _effective(t: ResolvedTenant) -> dict[str, Any]:
    # The models' own field dicts (frozen, JSON values only): a model_dump per tenant cost more.
    return {"quotas": {"tier": t.spec.tier, "weight": t.weight, **t.quotas.__dict__},
            "routes": _route_rows(t), "splits": _splits(t), "own_routes": t.own_routes, "own_models": _own_models(t),
            "pii": {"data_class": t.spec.data_class, **t.pii.__dict__}, "serving": _serving(t)}


def _serving(t: ResolvedTenant) -> dict[str, Any]:
    """What its file sets of how it is served beside the policies' decisions: the cell it is pinned to, and
    whether its gateway rate limits only count (shadow) or do not apply (exempt)."""
    return {"cell": t.spec.cell, **t.spec.rate_limit.__dict__}


def _route_rows(t: ResolvedTenant) -> list[dict[str, Any]]:
    """Where the tenant's catalog models are routed: one row per (region, model) with its versions. Rows, not
    the config's region -> model map, since a model's name as a key could be one the writer refuses."""
    return [{"region": r, "model": m, "versions": list(v)}
            for r, models in sorted(t.routes.items()) for m, v in sorted(models.items())]


def route_regions(routes: Any) -> set[str]:
    """The regions a recorded `routes` part routes any version to: rows, or the map records before rows had."""
    if isinstance(routes, dict):
        return {r for r, models in routes.items() if any(models.values())}
    return {row["region"] for row in routes or () if row.get("versions")}


def _splits(t: ResolvedTenant) -> list[dict[str, Any]]:
    """The tenant's catalog splits: one row per granted version with its percent."""
    return [{"model": m, "version": v, "percent": pct}
            for m, grant in sorted(t.spec.models.items()) for v, pct in sorted(grant.split.items())]


def _own_models(t: ResolvedTenant) -> list[dict[str, Any]]:
    """The tenant's own models: one row per declared version (0% included: it stays addressable) with
    its percent, the sha256 the runtime verifies its artifact against, where the artifact is read from
    (a bucket in another country is a residency question), and the model's format, base and pool (where
    its requests run)."""
    return [{"model": m, "version": v, "percent": om.split.get(v, 0), "sha256": ov.sha256,
             "artifact": ov.artifact, "format": str(om.format), "base": om.base, "pool": om.pool}
            for m, om in sorted(t.spec.own_models.items()) for v, ov in sorted(om.versions.items())]


def _same_effective(a: ResolvedTenant, b: ResolvedTenant) -> bool:
    """`_effective(a) == _effective(b)`, without building either (10,000 of them on a first load). The
    grants and own models compared whole: stricter than their rows, so never a false match."""
    return (a.spec.tier == b.spec.tier and a.weight == b.weight and a.quotas.__dict__ == b.quotas.__dict__
            and a.routes == b.routes and a.own_routes == b.own_routes and a.pii.__dict__ == b.pii.__dict__
            and a.spec.data_class == b.spec.data_class
            and a.spec.models == b.spec.models and a.spec.own_models == b.spec.own_models
            and a.spec.cell == b.spec.cell and a.spec.rate_limit == b.spec.rate_limit)


def _changed_rows(was: list[dict[str, Any]], now: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The rows of a row part that differ, before and after (a row added: only in `after`; removed:
    only in `before`); None when none does."""
    def key(row: dict[str, Any]) -> tuple[str, str]:
        return row["model"], row["version"]

    old, new = {key(r): r for r in was}, {key(r): r for r in now}
    before = [r for k, r in old.items() if new.get(k) != r]
    after = [r for k, r in new.items() if old.get(k) != r]
    return {"before": before, "after": after} if before or after else None


def _changes(was: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """What changed between two effective specs, part by part: a row part's changed rows, any other
    part whole."""
    result: dict[str, Any] = {}
    for part, value in now.items():
        if was[part] == value:
            continue
        if part in _ROW_PARTS:
            rows = _changed_rows(was[part], value)
            if rows is not None:
                result[part] = rows
        else:
            result[part] = {"before": was[part], "after": value}
    return result


def _input_digest(t: ResolvedTenant, documents: dict[str, Any]) -> str:
    """The digest of the document the policies were asked about (OPA logs the input; we log its
    digest): the policy layer's own, when its memo's `documents` have it for this very spec."""
    hit = documents.get(t.spec.id)
    if hit is not None and hit[0] is t.spec:
        return f"blake2b-96:{hit[2]}"
    from xds_server.policy.decide import spec_digest
    from xds_server.policy.resolve import tenant_document

    return f"blake2b-96:{spec_digest(tenant_document(t.spec))}"


def tenant_decisions(before: PlatformConfig | None, after: PlatformConfig, memo: Any = None,
                     at: str | None = None, tenants: Collection[str] | None = None,
                     ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One decision entry per tenant whose effective spec changed (added and removed included), and the
    results two or more entries share, each stored once by its digest.

    A first load of 10,000 tenants on tier defaults holds a handful of distinct results: written once
    each (in the record's `results`, the entry naming it in `result_ref`), the record is a third of the
    size, and serialising and scanning it costs a third. A result only one entry has stays inline in
    that entry (`result`), so the everyday one-tenant record keeps OPA's decision shape.

    `tenants`: the only ones that may differ (an incremental load's changes), instead of every tenant."""
    at = at or rfc3339()
    old = before.tenants if before is not None else {}
    # Unique per decision like OPA's UUIDs, without 10,000 of them to draw: one random prefix, a counter.
    prefix = uuid.uuid4().hex[:24]
    pending: list[tuple[str, dict[str, Any], str | None]] = []  # (tenant, result, input digest)
    # An added tenant's result is a function of its decision, which the policies memoise by the input's
    # digest: tenants with the same input share one result object (equality checked, never assumed).
    by_input: dict[str, tuple[ResolvedTenant, dict[str, Any]]] = {}
    documents: dict[str, Any] = getattr(memo, "documents", {}) if memo is not None else {}
    items: Iterable[tuple[str, ResolvedTenant]]
    if tenants is None:
        items, gone = after.tenants.items(), old.keys() - after.tenants.keys()
    else:
        items = [(t, after.tenants[t]) for t in sorted(tenants) if t in after.tenants]
        gone = {t for t in tenants if t in old and t not in after.tenants}
    for tid, new in items:
        prior = old.get(tid)
        if prior is new:
            continue  # the same object: neither its file nor its decision changed
        if prior is None:
            digest = _input_digest(new, documents)
            hit = by_input.get(digest)
            if hit is not None and _same_effective(hit[0], new):
                pending.append((tid, hit[1], digest))
                continue
            result = {part: {"before": None, "after": value} for part, value in _effective(new).items()}
            by_input.setdefault(digest, (new, result))
        else:
            result = _changes(_effective(prior), _effective(new))
            if not result and prior.spec == new.spec:
                continue
            digest = _input_digest(new, documents)
        pending.append((tid, result, digest))
    for tid in gone:
        was = _effective(old[tid])
        pending.append((tid, {part: {"before": value, "after": None} for part, value in was.items()}, None))

    # Content digests, one per distinct result object; equal results of different objects (a tier's
    # default changed for many tenants) meet under one digest too.
    refs: dict[int, str] = {}
    uses: dict[str, int] = {}
    for _, result, _ in pending:
        ref = refs.get(id(result))
        if ref is None:
            ref = refs[id(result)] = result_digest(result)
        uses[ref] = uses.get(ref, 0) + 1
    decisions: list[dict[str, Any]] = []
    shared: dict[str, dict[str, Any]] = {}
    for n, (tid, result, input_digest) in enumerate(pending):
        entry: dict[str, Any] = {"decision_id": f"{prefix}-{n:06d}", "path": DECISION_PATH, "tenant": tid,
                                 "input_digest": input_digest, "timestamp": at}
        ref = refs[id(result)]
        if uses[ref] > 1:
            entry["result_ref"] = ref
            shared.setdefault(ref, result)
        else:
            entry["result"] = result
        decisions.append(entry)
    decisions.sort(key=lambda d: d["tenant"])
    return decisions, shared


def result_digest(result: dict[str, Any]) -> str:
    """The key a shared result is stored under in a record's `results` (its canonical JSON's digest, so
    an auditor can check an entry against what it names)."""
    from xds_server.policy.decide import spec_digest

    return f"blake2b-96:{spec_digest(result)}"


def decision_of(record: dict[str, Any], tenant: str) -> dict[str, Any] | None:
    """`tenant`'s decision entry in `record` with its result inline (a shared result looked up in the
    record's `results` by the entry's `result_ref`, which stays in the entry); None: the record has none."""
    entry = next((d for d in record.get("decisions") or [] if d.get("tenant") == tenant), None)
    if entry is None or "result_ref" not in entry:
        return entry
    shared = record.get("results") or {}
    ref = entry["result_ref"]
    if ref not in shared:
        raise AuditError(f"audit record seq {record.get('seq')}: tenant {tenant}'s decision names result {ref}, "
                         "which the record's results do not hold")
    return {**entry, "result": shared[ref]}


@dataclass
class ControlPlaneAudit:
    """What the reload loop calls; never raises (a full disk is logged, the platform keeps serving).

    `describe` says where the config came from ({source, revision, author, ...}); a config source
    (S3 bundle, git) passes its own; the default reads the config folder's git checkout."""

    log: AuditLog
    config_dir: Path
    describe: Callable[[], dict[str, Any]] | None = None
    memo: Callable[[], Any] = field(default=lambda: None)
    # The last record that could not be written ({at, kind, error}) and how many were lost: the change was
    # served anyway, and an operator reads it in /status, not only in a log line.
    last_error: dict[str, Any] | None = None
    unrecorded: int = 0

    def status(self) -> dict[str, Any]:
        """The trail's head (its last seq and digest, where a shipped or downloaded copy must end) and
        whether a record was lost."""
        return {"log": str(self.log.path), "seq": self.log.seq, "head": self.log.head,
                "unrecorded": self.unrecorded, "last_error": self.last_error}

    def _lost(self, kind: str, err: Exception) -> None:
        self.unrecorded += 1
        self.last_error = {"at": rfc3339(), "kind": kind, "error": redact_secrets(str(err))}

    @classmethod
    def of(cls, cp: Any, audit_log: AuditLog) -> ControlPlaneAudit:
        """The trail of a ControlPlane: where each change came from (its config source's revision: an S3
        version, a git commit with its author; for a local folder, that folder's git checkout), and its
        policy memo's input digests."""
        config_dir = Path(cp.config_dir)

        def describe() -> dict[str, Any]:
            rev = getattr(cp, "revision", None)
            if rev is None or (rev.kind == "local" and rev.id is None):
                return git_source(config_dir)
            return {"source": rev.kind, "revision": rev.id, "author": rev.author, "source_location": rev.source,
                    "source_detail": dict(rev.detail)}

        return cls(audit_log, config_dir, describe=describe, memo=lambda: cp.tenant_files.policy_memo)

    def _source(self) -> dict[str, Any]:
        try:
            return self.describe() if self.describe is not None else git_source(self.config_dir)
        except Exception as err:  # a source that cannot say where it is must not stop the record
            return {"source": "unknown", "revision": None, "author": None, "source_error": str(err)}

    def applied(self, before: PlatformConfig | None, after: PlatformConfig, version: str,
                previous_version: str | None, changed: Collection[str] | None = None) -> dict[str, Any] | None:
        """`changed`: the only tenants that may differ from `before` (an incremental load), where known."""
        if version == previous_version:
            return None  # nothing was applied: the same snapshots are serving
        try:
            at = rfc3339()
            decisions, shared = tenant_decisions(before, after, self.memo(), at, changed)
            old = before.tenants if before is not None else {}
            candidates = after.tenants if changed is None else changed
            added = sorted(t for t in candidates if t in after.tenants and t not in old)
            removed = sorted(t for t in (old if changed is None else changed) if t in old and t not in after.tenants)
            return self.log.append(
                "config.applied", **self._source(), config_version=version, previous_version=previous_version,
                tenants=[d["tenant"] for d in decisions], added=added, removed=removed, decided_by=DECIDED_BY,
                decisions=decisions, **({"results": shared} if shared else {}))
        except (AuditError, OSError) as err:
            log.error("audit record of applied config %s not written: %s", version, err)
            self._lost("config.applied", err)
            return None

    def refused(self, reason: str, serving: str | None) -> dict[str, Any] | None:
        lines = [redact_secrets(line.strip()) for line in reason.splitlines() if line.strip()]
        summary, reasons = (lines[0], [r.removeprefix("- ") for r in lines[1:]]) if len(lines) > 1 else (
            lines[0] if lines else "refused", lines)
        tenants = sorted({m.group(1) for r in reasons for m in _TENANT_FILE.finditer(r)})
        try:
            return self.log.append("config.refused", **self._source(), serving_version=serving,
                                   summary=summary, reasons=reasons, tenants=tenants)
        except (AuditError, OSError) as err:
            log.error("audit record of a refused change not written: %s", err)
            self._lost("config.refused", err)
            return None
