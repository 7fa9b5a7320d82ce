"""`fairshare compliance report --tenant T`: the evidence an auditor asks for about one tenant (GDPR
Art. 30 records, SOC 2 change management), from the config, the policies' decisions and the audit
trail. Every value is read from what the platform enforces (the resolved tenant), not restated.

Nothing of other tenants appears: audit records are cut down to this tenant's decision, with each
record's seq and digest so the auditor can check them against the verified log.

An offboarded tenant is served nowhere, so its report comes from the trail alone (`offboarded_report`):
its offboarding with the receipt's digest, what it was last served with, and its records."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from xds_server.audit.log import AuditError
from xds_server.audit.trail import _TENANT_FILE, decision_of, route_regions
from xds_server.audit.verify import Verified, verify
from xds_server.config import load_config
from xds_server.config.model import PlatformConfig, ResolvedTenant, is_s3
from xds_server.listing import capped
from xds_server.offboard.receipt import digest as receipt_digest


class ReportError(AuditError):
    """The report cannot be made as asked (unknown tenant, a malformed date)."""


_WHEN_FORMS = "a date (2026-01-31) or an RFC 3339 time (2026-01-31T12:00:00Z)"


def parse_when(text: str | None, flag: str, end: bool = False, forms: str = _WHEN_FORMS) -> datetime | None:
    """A date (YYYY-MM-DD; with `end`, the end of that day) or an RFC 3339 time, as UTC. `forms`: what
    the error says the flag takes."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1) - timedelta(microseconds=1) if end else day
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is a valid time, past the last UTC one
        raise ReportError(f"{flag}: {text!r} is outside the dates this can read (years 1-9999 in UTC)") from None
    except ValueError:
        raise ReportError(f"{flag}: expected {forms}, got {text!r}") from None


def record_time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))


def touches(record: dict[str, Any], tenant: str) -> bool:
    return tenant in (record.get("tenants") or []) or record.get("tenant") == tenant


def select(records: list[dict[str, Any]], tenant: str | None, since: datetime | None,
           until: datetime | None) -> list[dict[str, Any]]:
    return [r for r in records
            if (tenant is None or touches(r, tenant))
            and (since is None or record_time(r) >= since) and (until is None or record_time(r) <= until)]


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def codeowners(root: Path, relative: str) -> tuple[str, list[str]] | None:
    """The owners CODEOWNERS gives `relative` (the last matching rule wins, as on GitHub/GitLab)."""
    for candidate in (root / "CODEOWNERS", root / ".github" / "CODEOWNERS", root / "docs" / "CODEOWNERS"):
        if not candidate.is_file():
            continue
        owners: list[str] | None = None
        for line in candidate.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and _owner_match(parts[0], relative):
                owners = parts[1:]
        return str(candidate.relative_to(root)), owners or []
    return None


def _owner_match(pattern: str, path: str) -> bool:
    from fnmatch import fnmatch

    anchored = pattern.startswith("/")
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    pattern = pattern.replace("**", "*")
    if anchored or "/" in pattern.rstrip("*"):
        return fnmatch(path, pattern)
    return any(fnmatch(part, pattern) for part in path.split("/")) or fnmatch(path, f"*/{pattern}")


def change_control(config_dir: Path, tenant: str) -> dict[str, Any]:
    """Who may change the tenant's spec: its file, the people who changed it (git), its code owners."""
    candidates = [config_dir / "tenants" / f"{tenant}.{ext}" for ext in ("yaml", "yml")]
    file = next((c for c in candidates if c.is_file()), candidates[0]).resolve()
    out: dict[str, Any] = {"source": "local", "file": str(file), "git": None, "codeowners": None}
    top = _git(file.parent, "rev-parse", "--show-toplevel")
    if top is None:
        out["note"] = "the config folder is not a git checkout: anyone who can write the folder can change the spec"
        return out
    root = Path(top.strip())
    relative = str(file.relative_to(root))
    log = _git(root, "log", "--follow", "--format=%H%x00%an <%ae>%x00%cI", "--", relative) or ""
    commits = [line.split("\0") for line in log.splitlines() if line.count("\0") == 2]
    authors: dict[str, int] = {}
    for _, author, _ in commits:
        authors[author] = authors.get(author, 0) + 1
    out["git"] = {"repository": str(root), "path": relative, "commits": len(commits),
                  "authors": [{"author": a, "commits": n} for a, n in sorted(authors.items())],
                  "last_commit": {"revision": commits[0][0], "author": commits[0][1], "at": commits[0][2]}
                  if commits else None,
                  "uncommitted_changes": bool((_git(root, "status", "--porcelain", "--", relative) or "").strip())}
    owners = codeowners(root, relative)
    if owners is not None:
        out["codeowners"] = {"file": owners[0], "owners": owners[1]}
    return out


def _file_digest(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _class_requirements(cfg: PlatformConfig, t: ResolvedTenant, policy_dir: Path | None) -> dict[str, Any] | None:
    """What the tenant's data class alone requires: the PII policy asked about the same tenant without
    its own additions (so the report can say which rules come from the class, which from the tenant)."""
    from xds_server.policy.backends import decider_for
    from xds_server.policy.engine import PolicyError
    from xds_server.policy.resolve import platform_document, tenant_document

    bare = t.spec.model_copy(update={"pii": type(t.spec.pii)(), "own_models": {}})
    try:
        decided = decider_for(cfg.platform.policy, policy_dir).decide(
            platform_document(cfg.tiers, cfg.regions, cfg.models), {t.id: tenant_document(bare)})
        pii = decided.tenants[t.id]["pii"]
    except (PolicyError, KeyError, TypeError):
        return None
    return {"redact": list(pii["redact"]), "block": list(pii["block"])}


def _bucket_region(cfg: PlatformConfig, bucket: str) -> str | None:
    return next((rid for rid, r in cfg.regions.items() if r.model_bucket == bucket), None)


def _where(cfg: PlatformConfig, artifact: str) -> dict[str, Any]:
    if is_s3(artifact):
        bucket, _, key = artifact.removeprefix("s3://").partition("/")
        return {"kind": "s3", "bucket": bucket, "key": key, "region": _bucket_region(cfg, bucket)}
    return {"kind": "local", "path": artifact}


def _holders(cfg: PlatformConfig, regions: list[str], pool: str) -> list[dict[str, Any]]:
    out = []
    for rid in regions:
        p = cfg.regions[rid].pool(pool)
        if p is not None:
            out.append({"region": rid, "pool": pool, "replicas": p.replicas})
    return out


def residency(cfg: PlatformConfig, t: ResolvedTenant) -> dict[str, Any]:
    routed = sorted({r for r, models in t.routes.items() if any(models.values())}
                    | {r for r, names in t.own_routes.items() if names})
    return {"may": {"home": t.spec.regions.home, "allowed": list(t.spec.regions.allowed),
                    "failover": list(t.spec.regions.failover), "policy": "fairshare/residency"},
            "is": {"routed_regions": routed, "routes": t.routes, "own_routes": t.own_routes}}


def models(cfg: PlatformConfig, t: ResolvedTenant) -> dict[str, Any]:
    catalog: list[dict[str, Any]] = []
    for name, grant in sorted(t.spec.models.items()):
        versions = []
        for version, pct in sorted(grant.split.items()):
            mv = cfg.models[name].versions[version]
            routed = sorted(r for r, m in t.routes.items() if version in m.get(name, []))
            versions.append({
                "version": version, "percent": pct, "pool": mv.pool, "loader": mv.loader,
                "deployed_in": cfg.version_regions(name, version), "routed_in": routed,
                "bytes_at": _where(cfg, mv.artifact) if mv.artifact else
                {"kind": "runtime-image", "loader": mv.loader},
                "held_by": _holders(cfg, routed, mv.pool)})
        catalog.append({"model": name, "kind": str(cfg.models[name].kind), "versions": versions})
    own: list[dict[str, Any]] = []
    for name, om in sorted(t.spec.own_models.items()):
        routed = sorted(r for r, names in t.own_routes.items() if name in names)
        own.append({"model": f"{t.id}:{name}", "format": str(om.format), "base": om.base, "pool": om.pool,
                    "routed_in": routed, "held_by": _holders(cfg, routed, om.pool),
                    "placement": "consistent hash on tenant and model: a few of the pool's replicas",
                    "versions": [{"version": v, "percent": om.split.get(v, 0), "sha256": ov.sha256,
                                  "bytes": ov.bytes, "bytes_at": _where(cfg, ov.artifact)}
                                 for v, ov in sorted(om.versions.items())]})
    prefixes = [{"region": rid, "bucket": cfg.regions[rid].model_bucket, "prefix": f"tenants/{t.id}/"}
                for rid in t.spec.regions.allowed if cfg.regions[rid].model_bucket]
    used = sorted({(w["bytes_at"]["bucket"], w["bytes_at"]["region"] or "")
                   for m in own for w in m["versions"] if w["bytes_at"]["kind"] == "s3"})
    return {"catalog": catalog, "own": own,
            "buckets": {"permitted": prefixes, "in_use": [{"bucket": b, "region": r or None} for b, r in used]}}


def quotas(cfg: PlatformConfig, t: ResolvedTenant) -> dict[str, Any]:
    tier = cfg.tiers[t.spec.tier]
    effective = t.quotas.model_dump()
    clamped = t.clamped()
    fields = {}
    for name, value in effective.items():
        if name in clamped:
            source = f"tenant asked {clamped[name][0]}, clamped to tier {t.spec.tier}'s limit"
        elif getattr(t.spec.quotas, name) is None:
            source = f"tier {t.spec.tier} default"
        else:
            source = "tenant override"
        fields[name] = {"effective": value, "from": source}
    return {"tier": t.spec.tier, "weight": t.weight, "quotas": fields,
            "tier_defaults": tier.quotas.model_dump(), "tier_limits": tier.limits.model_dump(exclude_none=True),
            "policy": "fairshare/quota"}


def pii(cfg: PlatformConfig, t: ResolvedTenant, policy_dir: Path | None) -> dict[str, Any]:
    from xds_server.policy.backends import default_policy_dir

    rego = (policy_dir or default_policy_dir()) / "pii" / "pii.rego"
    return {"data_class": t.spec.data_class, "class_requires": _class_requirements(cfg, t, policy_dir),
            "tenant_adds": t.spec.pii.model_dump(mode="json"), "effective": t.pii.model_dump(mode="json"),
            "policy": {"package": "fairshare.pii", "file": str(rego), "sha256": _file_digest(rego)}}


def _tenant_view(record: dict[str, Any], tenant: str) -> dict[str, Any]:
    """The record as this tenant's auditor may see it: its own decision and reasons, nothing of others."""
    kept = ("seq", "time", "kind", "source", "revision", "author", "config_version", "digest")
    view: dict[str, Any] = {k: record[k] for k in kept if k in record}
    # A shared result (the first load's tier defaults) inline: the view stands alone, and the ref it
    # keeps names the entry of the record's `results` it was read from.
    decision = decision_of(record, tenant)
    if decision is not None:
        view["decision"] = decision
    if record.get("reasons"):
        view["reasons"] = [r for r in record["reasons"]
                           if not (found := {m.group(1) for m in _TENANT_FILE.finditer(r)}) or tenant in found]
    only_this = record.get("tenants") == [tenant] or record.get("tenant") == tenant
    for key, value in record.items():  # an offboarding's own fields (it names only this tenant)
        if only_this and key not in view and key not in ("tenants", "decisions", "results", "prev", "added",
                                                           "removed", "reasons"):
            view[key] = value
    return view


def audit_section(log_path: Path, tenant: str, since: datetime | None, until: datetime | None,
                  result: Verified | None = None) -> dict[str, Any]:
    """`result`: the log already verified (an offboarded tenant's report reads it first)."""
    period = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    result = result if result is not None else verify(log_path)
    if not result.files:
        # Not an empty report: a wrong --log would read as "nothing changed, verified" to an auditor.
        raise ReportError(f"no audit log at {log_path}: give the trail's file with --log (or the control "
                          "plane's --state); `fairshare audit verify --log FILE` checks one")
    out: dict[str, Any] = {"log": str(log_path), "period": period, "verified": result.ok, "records": None}
    if not result.ok:
        out["break"] = str(result.broken)
        out["message"] = (f"REFUSED: the audit log does not verify ({result.broken}); no record is presented, "
                          "because none after the break can be trusted. Run `fairshare audit verify`.")
        return out
    chosen = select(result.records, tenant, since, until)
    out["records"] = [_tenant_view(r, tenant) for r in chosen]
    if not chosen:
        held = (f"the log holds {len(result.records)} records from {result.records[0]['time']} to "
                f"{result.records[-1]['time']}" if result.records else "the log holds no records yet")
        out["message"] = (f"no audit record touches tenant {tenant} in the period "
                          f"({period['since'] or 'start of the log'} .. {period['until'] or 'now'}); {held}")
    return out


@dataclass
class Report:
    data: dict[str, Any]

    @property
    def trustworthy(self) -> bool:
        """False when the audit log does not verify (the records were refused)."""
        return not self.data["audit"].get("break")

    def render(self) -> str:
        return render(self.data)


def build_report(config_dir: Path, tenant: str, log_path: Path, since: datetime | None = None,
                 until: datetime | None = None, policy_dir: Path | None = None,
                 receipt_file: Path | None = None) -> Report:
    """`receipt_file`: where an offboarded tenant's signed deletion receipt would be, to check it against
    the digest the trail recorded."""
    if since is not None and until is not None and since > until:
        raise ReportError(f"--since ({since.isoformat()}) is after --until ({until.isoformat()})")
    cfg = load_config(config_dir, policy_dir=policy_dir)
    if tenant not in cfg.tenants:
        # Offboarded: marked in its file, or offboarded and its file since removed (the trail says so).
        # Its auditor needs the report most now, so it is made from the trail, not refused.
        verified = verify(log_path)
        if tenant in cfg.offboarded or offboardings(verified.records, tenant):
            return Report(offboarded_report(config_dir, tenant, log_path, verified, since, until,
                                            marked=tenant in cfg.offboarded, receipt_file=receipt_file))
        raise ReportError(f"unknown tenant {tenant!r} in {config_dir} "
                          f"({len(cfg.tenants):,} known: {capped(sorted(cfg.tenants))})")
    t = cfg.tenants[tenant]
    data = {
        "tenant": tenant, "status": "served", "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": str(config_dir.resolve()),
        "residency": residency(cfg, t), "models": models(cfg, t), "pii": pii(cfg, t, policy_dir),
        "quotas": quotas(cfg, t), "change_control": change_control(config_dir, tenant),
        "audit": audit_section(log_path, tenant, since, until),
    }
    return Report(data)


def offboardings(records: list[dict[str, Any]], tenant: str) -> list[dict[str, Any]]:
    """The tenant's `tenant.offboarded` records (one per completed run: a retry records it again)."""
    return [r for r in records if r.get("kind") == "tenant.offboarded" and touches(r, tenant)]


def last_served(records: list[dict[str, Any]], tenant: str) -> dict[str, Any] | None:
    """What the tenant was served with before it left the config: the last record that removed it,
    whose decision holds every part's before."""
    record = next((r for r in reversed(records) if r.get("kind") == "config.applied"
                   and tenant in (r.get("removed") or [])), None)
    decision = decision_of(record, tenant) if record is not None else None
    if record is None or decision is None:
        return None
    return {"seq": record["seq"], "time": record["time"], "config_version": record.get("config_version"),
            "digest": record["digest"],
            "before": {part: change["before"] for part, change in (decision.get("result") or {}).items()}}


def receipt_check(receipt_file: Path | None, recorded: str | None) -> dict[str, Any] | None:
    """The deletion receipt on disk against the digest the trail recorded."""
    if receipt_file is None or not receipt_file.is_file():
        return None
    try:
        digest = receipt_digest(receipt_file.read_text())
    except OSError:
        return None
    return {"file": str(receipt_file), "sha256": digest, "matches_audit_record": digest == recorded}


def offboarded_report(config_dir: Path, tenant: str, log_path: Path, verified: Verified, since: datetime | None,
                      until: datetime | None, *, marked: bool, receipt_file: Path | None = None) -> dict[str, Any]:
    """An offboarded tenant's evidence: served nowhere, so no regions, models, rules or quotas of its own;
    when and how it was offboarded (the trail's offboarding records with the receipt's digest, whatever
    the period), what it was last served with, who may change its file, and its audit records."""
    # A log that does not verify is refused in the audit section: nothing read from it is presented.
    records = verified.records if verified.ok else []
    done = offboardings(records, tenant)
    last = done[-1] if done else None
    offboarding: dict[str, Any] = {
        "tenant_file": "marked offboard: true" if marked else "removed from the config",
        "records": [{k: r.get(k) for k in ("seq", "time", "steps", "receipt_sha256", "digest")} for r in done],
        "completed_at": last["time"] if last else None,
        "receipt_sha256": last.get("receipt_sha256") if last else None,
        "receipt": receipt_check(receipt_file, last.get("receipt_sha256") if last else None),
    }
    if last is None:
        offboarding["message"] = (
            "the trail holds no completed offboarding of this tenant" + (" (the log does not verify)"
                                                                        if not verified.ok else "")
            + f": it is marked but its data may remain; run `fairshare tenant offboard {tenant} --from-config`")
    return {
        "tenant": tenant, "status": "offboarded", "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": str(config_dir.resolve()), "offboarding": offboarding,
        "last_served": last_served(records, tenant),
        "change_control": change_control(config_dir, tenant),
        "audit": audit_section(log_path, tenant, since, until, verified),
    }


def _join(items: list[Any]) -> str:
    # A tenant with a thousand own models would make one line of them; `--json` keeps every one.
    return capped(items, REPORT_LIST_LIMIT) or "none"


REPORT_LIST_LIMIT = 10


def _rows(rows: list[dict[str, Any]] | None) -> str:
    if not rows:
        return "none"
    return _join([f"{r['model']} {r['version']} {r['percent']}%" + _own_row(r) for r in rows])


def _own_row(r: dict[str, Any]) -> str:
    """An own version's artifact and where it runs; records written before a field was recorded lack it."""
    if "sha256" not in r:
        return ""  # a catalog split's row
    facts = [f"sha256 {r['sha256'][:12]}"]
    if r.get("format"):
        facts.append(f"{r['format']}" + (f" over {r['base']}" if r.get("base") else "")
                     + (f" on pool {r['pool']}" if r.get("pool") else ""))
    if r.get("artifact"):
        facts.append(f"from {r['artifact']}")
    return f" ({', '.join(facts)})"


def _row_changes(result: dict[str, Any]) -> list[str]:
    """Each changed part, before -> after, one line each: the part's name alone would not say which canary
    moved, which artifact changed, which PII rule was dropped or which quota was raised."""
    lines = []
    for part in ("splits", "own_models"):
        if part in result and (result[part]["before"] or result[part]["after"]):
            lines.append(f"     {part}: {_rows(result[part]['before'])} -> {_rows(result[part]['after'])}")
    for part, show in (("routes", _routes), ("own_routes", _routes), ("quotas", _settings), ("pii", _settings),
                       ("serving", _settings)):
        if part in result:
            lines.append(f"     {part}: {show(result[part]['before'])} -> {show(result[part]['after'])}")
    return lines


def _settings(values: dict[str, Any] | None) -> str:
    if values is None:  # onboarded or offboarded: nothing on that side
        return "none"
    return ", ".join(f"{k} {_value(v)}" for k, v in values.items())


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def _routes(routes: Any) -> str:
    """A recorded `routes` (rows of region, model, versions; a region -> model map in older records) or
    `own_routes` (region -> names) part, region by region."""
    if routes is None:
        return "none"
    by_region: dict[str, list[str]] = {}
    if isinstance(routes, list):
        for row in routes:
            if row.get("versions"):
                by_region.setdefault(row["region"], []).append(f"{row['model']} {'/'.join(row['versions'])}")
    else:
        for region, models in sorted(routes.items()):
            named = ([f"{m} {'/'.join(v)}" for m, v in sorted(models.items()) if v] if isinstance(models, dict)
                     else [str(m) for m in models])
            if named:
                by_region[region] = named
    return "; ".join(f"{r}: {', '.join(names)}" for r, names in sorted(by_region.items())) or "none"


def render(d: dict[str, Any]) -> str:
    """The report for a person: one section per question an auditor asks."""
    if d.get("status") == "offboarded":
        return render_offboarded(d)
    lines = [f"Compliance report for tenant {d['tenant']}", f"generated {d['generated']} from {d['config']}", ""]
    res = d["residency"]
    lines += ["1. Where its traffic and model artifacts may be, and are",
              f"   may be in: {_join(res['may']['allowed'])} (home {res['may']['home']}; failover "
              f"{_join(res['may']['failover'])}; decided by {res['may']['policy']})",
              f"   is routed in: {_join(res['is']['routed_regions'])}"]
    for region, routes in sorted(res["is"]["routes"].items()):
        served = "; ".join(f"{m} {'/'.join(v)}" for m, v in sorted(routes.items()) if v)
        own = _join(res["is"]["own_routes"].get(region, []))
        lines.append(f"     {region}: catalog {served or 'none'}; own models {own}")
    m = d["models"]
    lines += ["", "2. Models that serve it and where their bytes live"]
    for c in m["catalog"]:
        for v in c["versions"]:
            at = v["bytes_at"]
            where = (f"s3://{at['bucket']}/{at['key']} ({at['region'] or 'bucket of no configured region'})"
                     if at["kind"] == "s3" else at.get("path") or f"in the runtime image (loader {at['loader']})")
            held = _join([f"{h['region']}/{h['pool']} ({h['replicas']} replicas)" for h in v["held_by"]])
            lines.append(f"   {c['model']} {v['version']} ({v['percent']}%): bytes {where}; routed in "
                         f"{_join(v['routed_in'])}; held by {held}")
    for o in m["own"]:
        held = _join([f"{h['region']}/{h['pool']} ({h['replicas']} replicas)" for h in o["held_by"]])
        lines.append(f"   own {o['model']} ({o['format']}): routed in {_join(o['routed_in'])}; held by {held} "
                     f"({o['placement']})")
        for v in o["versions"]:
            at = v["bytes_at"]
            where = f"s3://{at['bucket']}/{at['key']} (region {at['region']})" if at["kind"] == "s3" else \
                f"local path {at['path']}"
            lines.append(f"     version {v['version']} ({v['percent']}%): {where}, sha256 {v['sha256']}, "
                         f"{v['bytes']} bytes")
    lines.append("   model buckets it may use: " + _join(
        [f"s3://{p['bucket']}/{p['prefix']} ({p['region']})" for p in m["buckets"]["permitted"]]))
    lines.append("   model buckets holding its artifacts: " + (_join(
        [f"{b['bucket']} ({b['region']})" for b in m["buckets"]["in_use"]]) if m["buckets"]["in_use"]
        else "none (its artifacts are local paths)" if m["own"] else "none (it has no own models)"))
    p = d["pii"]
    req = p["class_requires"]
    lines += ["", "3. Personal data (PII) rules",
              f"   data class: {p['data_class'] or 'not set (the policy default applies)'}",
              "   the class requires: " + (f"redact {_join(req['redact'])}; block {_join(req['block'])}" if req
                                          else "(the policy could not be asked)"),
              f"   the tenant adds: redact {_join(p['tenant_adds']['redact'])}; block "
              f"{_join(p['tenant_adds']['block'])}",
              f"   effective: redact {_join(p['effective']['redact'])}; block {_join(p['effective']['block'])}; "
              f"unredacted to {_join(p['effective']['unredacted_models'])}",
              f"   decided by policy {p['policy']['package']} ({p['policy']['file']}, {p['policy']['sha256']})"]
    q = d["quotas"]
    lines += ["", f"4. Quotas (tier {q['tier']}, weight {q['weight']}; decided by {q['policy']})"]
    lines += [f"   {name}: {f['effective']} ({f['from']})" for name, f in q["quotas"].items()]
    lines += ["", *_change_control_lines(d["change_control"], 5), "", *_audit_lines(d["audit"], 6)]
    return "\n".join(lines)


def render_offboarded(d: dict[str, Any]) -> str:
    o = d["offboarding"]
    lines = [f"Compliance report for tenant {d['tenant']}: OFFBOARDED (served nowhere: no routes, tokens or models)",
             f"generated {d['generated']} from {d['config']}", "", "1. Offboarding",
             f"   tenant file: {o['tenant_file']}"]
    if o.get("message"):
        lines.append(f"   {o['message']}")
    for r in o["records"]:
        lines.append(f"   offboarded {r['time']} (audit seq {r['seq']}, digest {r['digest']}); steps "
                     f"{_join(r.get('steps') or [])}; deletion receipt sha256 {r.get('receipt_sha256')}")
    receipt = o.get("receipt")
    if receipt is None and o["records"]:
        lines.append("   no receipt file under --state to check against it: check the customer's copy "
                     "(its sha256 must match)")
    elif receipt is not None:
        lines.append(f"   receipt {receipt['file']}: sha256 {receipt['sha256']} "
                     + ("matches the audit record" if receipt["matches_audit_record"]
                        else "DOES NOT MATCH the audit record"))
    last = d["last_served"]
    lines += ["", "2. What it was last served with"]
    if last is None:
        lines.append("   no record in the trail removes it (it left the config before the log began, or the log "
                     "does not verify)")
    else:
        before = last["before"]
        regions = sorted(route_regions(before.get("routes"))
                         | {r for r, names in (before.get("own_routes") or {}).items() if names})
        lines += [f"   until {last['time']} (audit seq {last['seq']}, config {last['config_version']}): routed in "
                  f"{_join(regions)}",
                  f"   catalog splits: {_rows(before.get('splits'))}",
                  f"   own models: {_rows(before.get('own_models'))}"]
    lines += ["", *_change_control_lines(d["change_control"], 3), "", *_audit_lines(d["audit"], 4)]
    return "\n".join(lines)


def _change_control_lines(cc: dict[str, Any], n: int) -> list[str]:
    lines = [f"{n}. Who may change its spec", f"   tenant file: {cc['file']} (source: {cc['source']})"]
    if cc["git"] is None:
        lines.append(f"   {cc['note']}")
    else:
        g = cc["git"]
        lines.append(f"   git: {g['repository']}, {g['commits']} commit(s) to {g['path']}"
                     + (" (uncommitted changes present)" if g["uncommitted_changes"] else ""))
        lines += [f"     changed by {a['author']} ({a['commits']} commit(s))" for a in g["authors"]]
        owners = cc["codeowners"]
        lines.append(f"   code owners ({owners['file']}): {_join(owners['owners'])}" if owners
                     else "   no CODEOWNERS file: any committer with write access may change it")
    return lines


def _audit_lines(a: dict[str, Any], n: int) -> list[str]:
    period = f"{a['period']['since'] or 'start of the log'} .. {a['period']['until'] or 'now'}"
    lines = [f"{n}. Audit records ({period}; log {a['log']})"]
    if a.get("message"):
        lines.append(f"   {a['message']}")
    for r in a["records"] or []:
        what = ", ".join(sorted((r.get("decision") or {}).get("result", {}))) or (
            f"receipt sha256 {r['receipt_sha256']}" if r.get("receipt_sha256") else "-")
        who = r.get("author") or "author unknown"
        lines.append(f"   seq {r['seq']} {r['time']} {r['kind']}: {what}; revision {r.get('revision') or '-'} by "
                     f"{who}; digest {r['digest']}")
        lines += _row_changes((r.get("decision") or {}).get("result", {}))
        for reason in r.get("reasons", []):
            lines.append(f"     reason: {reason}")
    if a["verified"] and a["records"]:
        lines.append(f"   the chain verifies: {len(a['records'])} record(s) shown")
    return lines


__all__ = ["Report", "ReportError", "build_report", "offboardings", "parse_when", "select"]
