"""`fairshare audit verify|show`, `fairshare compliance report`, and `serve`'s audit flags. Kept here so
xds_server/cli.py only wires them in."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from xds_server.audit.log import DEFAULT_MAX_BYTES, AuditError, AuditLog
from xds_server.audit.trail import _TENANT_FILE, decision_of
from xds_server.config.files import UnreadableFile, regular_stat
from xds_server.config.loader import tenant_file_ids
from xds_server.listing import capped, clipped


def default_log(state: str | Path) -> Path:
    return Path(state) / "audit" / "audit.jsonl"


def _log_path(args: argparse.Namespace) -> Path:
    path = Path(args.log) if getattr(args, "log", None) else default_log(args.state)
    if path.is_dir():
        raise AuditError(f"--log {path} is a folder: name the log file in it (e.g. {path / 'audit.jsonl'})")
    try:
        regular_stat(str(path))  # None: no log there, which each command words as its own
    except UnreadableFile as err:  # a FIFO or /dev/zero: reading it never ended
        raise AuditError(f"--log {path}: {err}") from None
    return path


def add_serve_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--audit-log", default=None, metavar="PATH",
                    help="append every applied or refused change here (default: <state>/audit/audit.jsonl)")
    sp.add_argument("--no-audit", action="store_true", help="keep no audit trail")
    sp.add_argument("--audit-max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                    help="rotate the audit log past this size (default: 16)")
    sp.add_argument("--audit-ship", default=None, metavar="s3://BUCKET/PREFIX",
                    help="upload each rotated audit file there (object lock where the bucket has it)")
    sp.add_argument("--audit-lock-days", type=int, default=365,
                    help="object-lock retention when the bucket has no default rule (default: 365)")
    sp.add_argument("--audit-seal-after", type=_seconds, default=DEFAULT_SEAL_AFTER_S, metavar="SECONDS",
                    help="with --audit-ship: seal and ship the active file once its first record is this old, "
                         f"however quiet the control plane (default: {DEFAULT_SEAL_AFTER_S}; 0: only past "
                         "--audit-max-mb and at a stop)")


# An hour: what a node lost outright (no stop runs) may take of the trail, at a file per pod per hour.
DEFAULT_SEAL_AFTER_S = 3600


def _seconds(text: str) -> int:
    from xds_server.cli import _whole_number  # the CLI's one bounded-integer type; it imports this module

    return _whole_number(text, 0, noun="a whole number of seconds", unit=" seconds")


def open_from_args(args: argparse.Namespace) -> AuditLog | None:
    """The audit log `serve` appends to; raises AuditError with what is wrong."""
    if args.no_audit:
        return None
    shipper = None
    if args.audit_ship:
        from xds_server.audit.ship import S3Shipper

        shipper = S3Shipper(args.audit_ship, retention_days=args.audit_lock_days)
    path = Path(args.audit_log) if args.audit_log else default_log(args.state)
    return AuditLog(path, int(args.audit_max_mb * 2**20), shipper=shipper)


def _verify(args: argparse.Namespace) -> int:
    from xds_server.audit.verify import verify

    result = verify(_log_path(args))
    if not result.files:
        print(f"error: no audit log at {_log_path(args)}", file=sys.stderr)
        return 2
    print(result.render(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _show(args: argparse.Namespace) -> int:
    from xds_server.audit.report import ReportError, select
    from xds_server.audit.verify import verify

    since, until = parse_since(args.since, "--since"), parse_since(args.until, "--until", end=True)
    if since is not None and until is not None and since > until:
        raise ReportError(f"--since ({since.isoformat()}) is after --until ({until.isoformat()})")
    result = verify(_log_path(args))
    if not result.files:
        print(f"error: no audit log at {_log_path(args)}", file=sys.stderr)
        return 2
    tenant = args.tenant
    named = result.records if tenant is None else select(result.records, tenant, None, None)
    shown = select(named, None, since, until)
    for record in shown:
        if args.json:
            print(json.dumps(record if tenant is None else cut_to_tenant(record, tenant), sort_keys=True))
        else:
            print("\n".join(record_lines(record, tenant)))
    if not result.ok:
        print(f"error: the chain breaks at {result.broken}; records after it are not shown", file=sys.stderr)
        return 1
    if shown:
        return 0
    if tenant is not None and not named:
        # Named by no record: a tenant of the config that nothing has changed yet, or no tenant at all.
        known = tenant_file_ids(args.config)
        if tenant not in known:
            print(f"error: unknown tenant {tenant!r}: no audit record names it and {args.config} has no tenant "
                  f"file for it ({len(known):,} known: {capped(known) or 'none'})", file=sys.stderr)
            return 2
        print(f"no audit record names tenant {tenant} (its file is in {args.config}; no change to it is "
              f"recorded in {_log_path(args)})", file=sys.stderr)
        return 0
    period = f"{since.isoformat() if since else 'start of the log'} .. {until.isoformat() if until else 'now'}"
    if tenant is None:
        held = (f"the log holds {len(named):,} record(s), {named[0]['time']} .. {named[-1]['time']}" if named
                else "the log holds no records yet")
        print(f"no audit record in the period ({period}); {held}", file=sys.stderr)
    else:
        print(f"no audit record names tenant {tenant} in the period ({period}); {len(named):,} record(s) name it, "
              f"{named[0]['time']} .. {named[-1]['time']}", file=sys.stderr)
    return 0


# `--since 30m`: a duration back from now, in one unit.
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str | None, flag: str, end: bool = False, now: datetime | None = None) -> datetime | None:
    """A duration back from `now` (`30m`, `1h`, `7d`; units s, m, h, d, w), else what the compliance
    report takes: a date (with `end`, the end of that day) or an RFC 3339 time, as UTC."""
    from xds_server.audit.report import ReportError, parse_when

    if text is None:
        return None
    found = _DURATION.match(text.strip())
    if found is not None:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        except OverflowError:
            raise ReportError(f"{flag}: {text!r} reaches back before year 1") from None
    return parse_when(text, flag, end, forms="a duration back from now (30m, 1h, 7d), a date (2026-01-31) or an "
                      "RFC 3339 time (2026-01-31T12:00:00Z)")


# Fields that say nothing of any one tenant: a record cut to a tenant keeps them whole. Any other field of
# a record that names other tenants too is left out (a kind added later cannot leak through the cut).
_SHARED_FIELDS = frozenset({
    "seq", "time", "kind", "source", "revision", "author", "modified", "source_location", "source_detail",
    "source_error", "config_version", "previous_version", "serving_version", "decided_by", "prev", "digest"})
# Fields that hold every tenant's part: cut to the one tenant's.
_PER_TENANT_FIELDS = frozenset({"tenants", "added", "removed", "decisions", "results", "reasons", "summary"})


def _for_tenant(text: str, tenant: str) -> bool:
    """A reason names no tenant's file, or names this tenant's."""
    found = {m.group(1) for m in _TENANT_FILE.finditer(text)}
    return not found or tenant in found


def cut_to_tenant(record: dict[str, Any], tenant: str) -> dict[str, Any]:
    """`record` as `tenant`'s auditor may see it: its own decision (a shared result inline, the
    `result_ref` it was read from kept), `tenants`/`added`/`removed` cut to it, the reasons that name no
    other tenant. `cut_to_tenant` marks it: the cut no longer hashes to `digest`, which is the full
    record's (`fairshare audit verify` checks the full log)."""
    only_this = record.get("tenants") == [tenant] or record.get("tenant") == tenant
    out = {k: v for k, v in record.items()
           if k in _SHARED_FIELDS or (only_this and k not in _PER_TENANT_FIELDS)}
    for key in ("tenants", "added", "removed"):
        if key in record:
            out[key] = [tenant] if tenant in (record[key] or []) else []
    if "decisions" in record:
        decision = decision_of(record, tenant)
        out["decisions"] = [] if decision is None else [decision]
    if "reasons" in record:
        out["reasons"] = [r for r in record["reasons"] or [] if _for_tenant(str(r), tenant)]
    if "summary" in record and _for_tenant(str(record["summary"]), tenant):
        out["summary"] = record["summary"]
    out["cut_to_tenant"] = tenant
    return out


# A refusal's reason may be an Envoy rejection naming thousands of resources: one line each, cut.
REASON_CHARS = 300


def record_lines(record: dict[str, Any], tenant: str | None = None) -> list[str]:
    """A record for a person: one line (seq, time, kind, where it came from, the config version, the
    tenants it names); with `tenant`, only that tenant's part, its changes in a line or two, as the
    compliance report renders them."""
    from xds_server.audit.report import _row_changes

    view = record if tenant is None else cut_to_tenant(record, tenant)
    kind = str(view.get("kind"))
    facts = []
    if "source" in view:
        # `from git 1a2b3c by Jane <jane@example.com>`; a local folder outside git has neither.
        source = " ".join(str(part) for part in (view["source"], view.get("revision")) if part)
        facts.append(f"from {source}" + (f" by {view['author']}" if view.get("author") else "")
                     + (" (uncommitted changes)" if view.get("modified") else ""))
    if view.get("config_version") is not None:
        was = view.get("previous_version")
        facts.append(f"config {view['config_version']}" + (f" (was {was})" if was else " (first)"))
    if kind == "config.refused":
        facts.append(f"refused, still serving {view.get('serving_version') or 'nothing'}")
        if view.get("summary"):
            facts.append(clipped(str(view["summary"]).rstrip(":"), REASON_CHARS))
    if view.get("receipt_sha256"):
        facts.append(f"receipt sha256 {view['receipt_sha256']}")
    names = view.get("tenants") or []
    if tenant is None and names:
        counts = [f"{len(view[k]):,} {k}" for k in ("added", "removed") if view.get(k)]
        facts.append(f"{len(names):,} tenant{'s' if len(names) != 1 else ''}: {capped(names)}"
                     + (f" ({', '.join(counts)})" if counts else ""))
    lines = [f"seq {view.get('seq')} {view.get('time')} {kind}" + (": " + "; ".join(facts) if facts else "")]
    if tenant is None:
        return lines
    decision = (view.get("decisions") or [None])[0]
    if decision is not None:
        result = decision.get("result") or {}
        how = " (added)" if tenant in (view.get("added") or []) else \
            " (removed)" if tenant in (view.get("removed") or []) else ""
        what = ", ".join(sorted(result)) or "its file changed, its effective spec did not"
        lines.append(f"   {tenant}{how}: {what}")
        lines += _row_changes(result)
    elif kind != "config.refused":
        lines.append(f"   {tenant}: {kind}" + (f", steps {capped(view['steps'])}" if view.get("steps") else ""))
    lines += [f"     reason: {clipped(str(r), REASON_CHARS)}" for r in view.get("reasons") or []]
    return lines


def _report(args: argparse.Namespace) -> int:
    from xds_server.audit.report import build_report
    from xds_server.offboard.run import receipt_path

    # The forms `audit show` takes: a duration back from now (7d), a date or an RFC 3339 time.
    since, until = parse_since(args.since, "--since"), parse_since(args.until, "--until", end=True)
    # An offboarded tenant's receipt, where `fairshare tenant offboard` with the same --state wrote it.
    report = build_report(Path(args.config), args.tenant, _log_path(args), since, until,
                          Path(args.policy) if args.policy else None,
                          receipt_file=receipt_path(Path(args.state), args.tenant))
    print(json.dumps(report.data, indent=2) if args.json else report.render())
    return 0 if report.trustworthy else 1


SHOW_EPILOG = (". With --tenant, each record is cut to that tenant's part and marked \"cut_to_tenant\": a cut "
               "record no longer hashes to its digest, so the hash chain is checked on the full log, with "
               "`fairshare audit verify`.")


def add_commands(sub: argparse._SubParsersAction[Any], default_state: str) -> None:
    group = sub.add_parser("audit", help="verify and show the audit trail",
                           description="verify and show the audit trail (hash-chained, append-only)")
    commands = group.add_subparsers(required=True, metavar="AUDIT_COMMAND")
    for name, func, help_ in (("verify", _verify, "walk the hash chain across rotated files; exit 1 at the "
                                                  "first break, naming file, line and seq"),
                              ("show", _show, "print the verified records, one line each (--json: JSON lines), "
                                              "optionally one tenant's part of them")):
        sp = commands.add_parser(name, help=help_, description=help_ + (SHOW_EPILOG if name == "show" else ""))
        sp.add_argument("--state", default=default_state, help="local state (default log: <state>/audit/audit.jsonl)")
        sp.add_argument("--log", default=None, metavar="PATH", help="the active audit log file")
        sp.set_defaults(func=func)
        if name == "show":
            sp.add_argument("--tenant", default=None,
                            help="only the records naming this tenant, each cut to its part (its decision, nothing "
                                 "of other tenants); a cut record no longer hashes to its digest")
            sp.add_argument("--since", default=None,
                            help="from this long ago (30m, 1h, 7d), this date or this RFC 3339 time (UTC)")
            sp.add_argument("--until", default=None,
                            help="up to this long ago (1h), this date (inclusive) or this time (UTC)")
            sp.add_argument("--json", action="store_true",
                            help="one JSON record per line (with --tenant: cut, marked cut_to_tenant)")
            sp.add_argument("--config", default="config",
                            help="config directory, to tell a tenant without records from an unknown one "
                                 "(default: config/)")
    comp = sub.add_parser("compliance", help="evidence for a tenant's auditor",
                          description="evidence for a tenant's auditor")
    ccommands = comp.add_subparsers(required=True, metavar="COMPLIANCE_COMMAND")
    r = ccommands.add_parser("report", help="where a tenant's data may be and is, what serves it, its PII "
                             "rules, quotas, who may change it, and its audit records for a period")
    r.add_argument("--tenant", required=True)
    r.add_argument("--since", default=None, help="from this long ago (30m, 1h, 7d), date or RFC 3339 time (UTC; "
                   "default: the log's start)")
    r.add_argument("--until", default=None, help="up to this long ago, date (inclusive) or time (UTC; default: now)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--log", default=None, metavar="PATH", help="the audit log (default: <state>/audit/audit.jsonl)")
    r.add_argument("--config", default="config", help="config directory (default: config/)")
    r.add_argument("--state", default=default_state,
                   help="local state (an offboarded tenant's deletion receipt: <state>/offboard/T.receipt.jws)")
    r.add_argument("--policy", default=None, help="policy directory (default: the repository's policy/)")
    r.set_defaults(func=_report)


__all__ = ["AuditError", "add_commands", "add_serve_arguments", "open_from_args"]
