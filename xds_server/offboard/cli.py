"""`fairshare tenant offboard` and `fairshare receipt verify`: parsers and handlers, added to the main
command line by xds_server/cli.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xds_server.offboard import receipt
from xds_server.offboard.run import STEPS, OffboardError, Offboarding, Options, state_path


def _recovery_days(text: str) -> int:
    """Checked when the command is read: Secrets Manager refused a window outside 7-30 days only at step 7,
    after the tenant's routes, tokens and models were already gone."""
    from xds_server.cli import _whole_number  # the command line's bounded integer (it imports this module)
    from xds_server.offboard.storage import MAX_RECOVERY_DAYS, MIN_RECOVERY_DAYS

    return _whole_number(text, MIN_RECOVERY_DAYS, MAX_RECOVERY_DAYS, noun="a whole number of days", unit=" days")


def _port(text: str) -> int:
    from xds_server.cli import _port as port

    return port(text)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], default_state: Path) -> None:
    tenant = sub.add_parser("tenant", help="tenant lifecycle: offboard", description="tenant lifecycle")
    tcommands = tenant.add_subparsers(required=True, metavar="TENANT_COMMAND")
    off = tcommands.add_parser(
        "offboard", help="remove a tenant everywhere and write a signed deletion receipt",
        description="Remove TENANT's routes from every gateway, refuse its tokens, unload and delete its own "
                    "models, delete its rate-limit counters, schedule its secrets for deletion, and write a "
                    "deletion receipt signed with the platform key. Safe to run again after a failure.")
    off.add_argument("tenant")
    off.add_argument("--config", default="config", help="config directory (default: config/)")
    off.add_argument("--state", default=str(default_state), help="local state: the platform key, progress, receipts")
    off.add_argument("--yes", action="store_true",
                     help="confirm without asking (without it: asked on a terminal, refused elsewhere)")
    off.add_argument("--json", action="store_true", help="print the receipt as JSON")
    off.add_argument("--from-config", action="store_true",
                     help="the config-change flow: the tenant file already says `offboard: true` (merged); "
                          "refuse otherwise, and never write the config")
    off.add_argument("--host", default="127.0.0.1", help="the control plane's host")
    off.add_argument("--status-port", type=_port, default=18001, help="the control plane's status port")
    off.add_argument("--recovery-window-days", type=_recovery_days, default=30,
                     help="days a deleted secret stays recoverable (7-30, as Terraform's recovery_window_in_days)")
    off.add_argument("--no-aws", action="store_true",
                     help="skip the model buckets and Secrets Manager (a local platform without AWS)")
    off.add_argument("--timeout", type=float, default=120.0, help="longest wait for every Envoy's ACK (s)")
    off.add_argument("--tls-dir", default=None, metavar="DIR",
                     help="the control plane's certificate (tls.crt, tls.key, ca.crt) for the replicas' admin "
                     "ports with mutual TLS on (default: <state>/tls/controlplane, `fairshare run`'s)")
    off.set_defaults(func=_offboard)

    rc = sub.add_parser("receipt", help="deletion receipts: verify", description="deletion receipts")
    rcommands = rc.add_subparsers(required=True, metavar="RECEIPT_COMMAND")
    ver = rcommands.add_parser("verify", help="check a deletion receipt's signature against the platform's JWKS",
                               description="check a deletion receipt's signature against the platform's JWKS")
    ver.add_argument("file")
    ver.add_argument("--jwks", required=True, metavar="URL|FILE",
                     help="the JWKS (e.g. http://CONTROL_PLANE:18001/.well-known/jwks.json, or a saved copy)")
    ver.add_argument("--json", action="store_true", help="print the verified receipt as JSON")
    ver.set_defaults(func=_verify)

    logs = sub.add_parser("logs", help="the platform's local logs: retention", description="the platform's logs")
    lcommands = logs.add_subparsers(required=True, metavar="LOGS_COMMAND")
    sw = lcommands.add_parser("sweep", help="remove every line of the logs under <state>/run older than its "
                              "retention period (policy/retention)", description="apply policy/retention to "
                              "<state>/run; removed tenants' classes are read from <state>/audit")
    sw.add_argument("--config", default="config", help="config directory (default: config/)")
    sw.add_argument("--state", default=str(default_state), help="local state (logs under <state>/run)")
    sw.add_argument("--policy", default=None, help="policy directory (default: the repository's policy/)")
    sw.add_argument("--dry-run", action="store_true", help="say what would be emptied; change nothing")
    sw.add_argument("--json", action="store_true", help="machine-readable output")
    sw.set_defaults(func=_sweep)


def _offboard(args: argparse.Namespace) -> int:
    opts = Options(tenant=args.tenant, config_dir=Path(args.config), state_dir=Path(args.state),
                   status_url=f"http://{args.host}:{args.status_port}", from_config=args.from_config,
                   no_aws=args.no_aws, recovery_window_days=args.recovery_window_days, timeout_s=args.timeout,
                   tls_dir=Path(args.tls_dir) if args.tls_dir else None)
    if not (args.yes or args.from_config):
        if not sys.stdin.isatty():
            print(f"error: offboarding deletes tenant {args.tenant}'s models, counters and secrets; "
                  "pass --yes to confirm", file=sys.stderr)
            return 2
        answer = input(f"offboard {args.tenant}: delete its routes, models, artifacts, counters and secrets? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done", file=sys.stderr)
            return 1
    quiet = args.json
    job = Offboarding(opts, progress=(lambda _: None) if quiet else print)
    if not quiet:
        print(f"offboarding {args.tenant}")
    try:
        body, signed = job.run()
    except OffboardError as err:
        if err.step is None:
            print(f"error: {err}", file=sys.stderr)
            return 2
        path = state_path(opts.state_dir, args.tenant)
        done = [s for s in STEPS if s in _done(path)]
        print(f"error: offboarding {args.tenant} stopped at step {err.step!r}: {err}\n"
              f"  done: {', '.join(done) or 'none'} (recorded in {path})\n"
              "  fix the cause and run the same command again: done steps are skipped, and every step is "
              "safe to repeat", file=sys.stderr)
        return 1
    if quiet:
        print(json.dumps({"receipt_file": str(signed), "receipt": body}, indent=2))
    else:
        print(f"offboarded {args.tenant}; signed deletion receipt: {signed}\n"
              f"  check it: fairshare receipt verify {signed} --jwks {opts.status_url}/.well-known/jwks.json")
    return 0


def _done(path: Path) -> dict[str, object]:
    try:
        return dict(json.loads(path.read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _verify(args: argparse.Namespace) -> int:
    from xds_server.config.files import UnreadableFile, read_regular

    try:
        data = read_regular(Path(args.file))  # a FIFO is refused, not waited on
    except UnreadableFile as err:
        print(f"error: {args.file}: {err}", file=sys.stderr)
        return 2
    try:
        body = receipt.verify(receipt.text_of(data), receipt.load_jwks(args.jwks))
    except receipt.ReceiptError as err:
        print(f"error: {args.file}: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        steps = ", ".join(str(s.get("step")) for s in body.get("steps", []))
        print(f"receipt OK: tenant {body.get('tenant')} offboarded {body.get('completed_at')} "
              f"(steps: {steps}; signed by key {body.get('signed_by', {}).get('kid')})")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from xds_server.audit.cli import default_log
    from xds_server.retention import RetentionError, sweep

    run_dir = Path(args.state) / "run"
    try:
        decisions = sweep(run_dir, Path(args.config), dry_run=args.dry_run,
                          policy_dir=Path(args.policy) if args.policy else None,
                          audit_log=default_log(args.state))
    except RetentionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([d.to_json() for d in decisions], indent=2))
        return 0
    if not decisions:
        print(f"no logs under {run_dir}")
    for d in decisions:
        would = "" if d.done else "would "
        if d.emptied:
            verdict = f"{would}empty"
        elif d.dropped_lines:
            verdict = f"{would}remove {d.dropped_lines:,} line(s) older than {d.keep_days} days, keep {d.kept_lines:,}"
        else:
            verdict = "keep"
        print(f"{d.path}: {verdict} (kept {d.keep_days} days; last written {d.age_days:.1f} days ago)")
    return 0
