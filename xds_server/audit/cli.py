"""`fairshare audit verify|show`, `fairshare compliance report`, and `serve`'s audit flags. Kept here so
xds_server/cli.py only wires them in."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from xds_server.audit.log import DEFAULT_MAX_BYTES, AuditError, AuditLog


def default_log(state: str | Path) -> Path:
    return Path(state) / "audit" / "audit.jsonl"


def _log_path(args: argparse.Namespace) -> Path:
    return Path(args.log) if getattr(args, "log", None) else default_log(args.state)


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
    from xds_server.audit.report import parse_when, select
    from xds_server.audit.verify import verify

    since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until", end=True)
    result = verify(_log_path(args))
    if not result.files:
        print(f"error: no audit log at {_log_path(args)}", file=sys.stderr)
        return 2
    for record in select(result.records, args.tenant, since, until):
        print(json.dumps(record, sort_keys=True))
    if not result.ok:
        print(f"error: the chain breaks at {result.broken}; records after it are not shown", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from xds_server.audit.report import build_report, parse_when
    from xds_server.offboard.run import receipt_path

    since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until", end=True)
    # An offboarded tenant's receipt, where `fairshare tenant offboard` with the same --state wrote it.
    report = build_report(Path(args.config), args.tenant, _log_path(args), since, until,
                          Path(args.policy) if args.policy else None,
                          receipt_file=receipt_path(Path(args.state), args.tenant))
    print(json.dumps(report.data, indent=2) if args.json else report.render())
    return 0 if report.trustworthy else 1


def add_commands(sub: argparse._SubParsersAction[Any], default_state: str) -> None:
    group = sub.add_parser("audit", help="verify and show the audit trail",
                           description="verify and show the audit trail (hash-chained, append-only)")
    commands = group.add_subparsers(required=True, metavar="AUDIT_COMMAND")
    for name, func, help_ in (("verify", _verify, "walk the hash chain across rotated files; exit 1 at the "
                                                  "first break, naming file, line and seq"),
                              ("show", _show, "print the verified records (JSON lines), optionally filtered")):
        sp = commands.add_parser(name, help=help_, description=help_)
        sp.add_argument("--state", default=default_state, help="local state (default log: <state>/audit/audit.jsonl)")
        sp.add_argument("--log", default=None, metavar="PATH", help="the active audit log file")
        sp.set_defaults(func=func)
        if name == "show":
            sp.add_argument("--tenant", default=None, help="only records touching this tenant")
            sp.add_argument("--since", default=None, help="from this date or RFC 3339 time (UTC)")
            sp.add_argument("--until", default=None, help="up to this date (inclusive) or time (UTC)")
    comp = sub.add_parser("compliance", help="evidence for a tenant's auditor",
                          description="evidence for a tenant's auditor")
    ccommands = comp.add_subparsers(required=True, metavar="COMPLIANCE_COMMAND")
    r = ccommands.add_parser("report", help="where a tenant's data may be and is, what serves it, its PII "
                             "rules, quotas, who may change it, and its audit records for a period")
    r.add_argument("--tenant", required=True)
    r.add_argument("--since", default=None, help="from this date or RFC 3339 time (UTC; default: the log's start)")
    r.add_argument("--until", default=None, help="up to this date, inclusive, or time (UTC; default: now)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--log", default=None, metavar="PATH", help="the audit log (default: <state>/audit/audit.jsonl)")
    r.add_argument("--config", default="config", help="config directory (default: config/)")
    r.add_argument("--state", default=default_state,
                   help="local state (an offboarded tenant's deletion receipt: <state>/offboard/T.receipt.jws)")
    r.add_argument("--policy", default=None, help="policy directory (default: the repository's policy/)")
    r.set_defaults(func=_report)


__all__ = ["AuditError", "add_commands", "add_serve_arguments", "open_from_args"]
