"""`fairshare`: the platform engineer's command line. Every command takes --config DIR (default config/)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from xds_server.audit import cli as audit_cli
from xds_server.audit.log import AuditError
from xds_server.auth.keys import SigningKey, SigningKeyError
from xds_server.auth.tokens import UnknownTenant, issue_from_files
from xds_server.config import ConfigError, load_config
from xds_server.config.errors import PROBLEMS_SHOWN
from xds_server.config.model import clamped_notes
from xds_server.listing import capped, capped_lines
from xds_server.sources.config import cli as config_cli

DEFAULT_STATE = Path(os.environ.get("FAIRSHARE_STATE", ".fairshare"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "policy", None):
        # Through the environment, so the processes `run` starts decide with the same policies.
        os.environ["FAIRSHARE_POLICY_DIR"] = str(Path(args.policy).resolve())
    logging.basicConfig(
        level=os.environ.get("FAIRSHARE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.func in _LOADS_THE_CONFIG:
            from xds_server.still_working import still_working

            with still_working(f"fairshare: still reading, checking and deciding the config in {args.config}"):
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except (UnknownTenant, SigningKeyError, AuditError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours; stdout is pointed at /dev/null so that
        # Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _validate(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        if not args.json:
            raise  # main() prints it for a person: the first problems, then a count
        print(json.dumps(err.to_json(), indent=2))
        return 2
    notes = clamped_notes(cfg)
    if args.json:
        print(json.dumps({"ok": True, "tenants": len(cfg.tenants), "models": len(cfg.models),
                          "regions": len(cfg.regions), "notes": notes}, indent=2))
    else:
        print(f"config OK: {len(cfg.tenants)} tenants, {len(cfg.models)} models, {len(cfg.regions)} regions")
        for line in capped_lines(notes, PROBLEMS_SHOWN, "note: ", "notes (--json lists every one)"):
            print(line)
    return 0


def _token(args: argparse.Namespace) -> int:
    key = SigningKey.load_or_create(args.state)
    print(issue_from_files(args.config, key, args.tenant, args.ttl))
    return 0


def _compile(args: argparse.Namespace) -> int:
    from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory

    cfg = load_config(args.config)
    endpoints = EndpointDirectory.load(args.endpoints) if args.endpoints else EndpointDirectory()
    key = SigningKey.load_or_create(args.state)
    compiled = Compiler().compile(CompileInputs(cfg, endpoints, key.jwks()))
    summary = {
        "version": compiled.version,
        "regions": {
            region: {
                "version": snap.version,
                "bytes": snap.total_bytes(),
                "resources": {t.rsplit(".", 1)[-1]: sorted(by_name) for t, by_name in snap.resources.items()},
            }
            for region, snap in compiled.snapshots.items()
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_compiled_table(summary))
    return 0


# Snapshots a person reads in one screen (a region of 40 cells is 41); --json holds every one.
COMPILED_ROWS = 50


def _compiled_table(summary: dict[str, Any]) -> str:
    """One row per snapshot: its version, size and how many resources of each type it holds; the names
    (30,000 at 10,000 tenants) only in --json."""
    from xds_server.status_table import size, table

    snaps = summary["regions"]
    types = sorted({t for s in snaps.values() for t in s["resources"]}, key=lambda t: (list(_COLUMNS).index(t)
                                                                                         if t in _COLUMNS else 99, t))
    rows = [[key, s["version"][:12], size(s["bytes"]), *(f"{len(s['resources'].get(t, ())):,}" for t in types)]
            for key, s in sorted(snaps.items())]
    lines = [f"config version {summary['version']}: {len(snaps)} snapshot{'s' if len(snaps) != 1 else ''}",
             *table(["SNAPSHOT", "VERSION", "SIZE", *(_COLUMNS.get(t, t.upper()) for t in types)],
                   rows[:COMPILED_ROWS])]
    if len(rows) > COMPILED_ROWS:
        lines.append(f"... and {len(rows) - COMPILED_ROWS} more snapshots (--json lists every one)")
    return "\n".join(lines)


_COLUMNS = {"Listener": "LISTENERS", "ScopedRouteConfiguration": "SCOPES", "RouteConfiguration": "ROUTES",
            "Cluster": "CLUSTERS", "ClusterLoadAssignment": "ENDPOINTS", "Secret": "SECRETS"}


def _serve(args: argparse.Namespace) -> int:
    from inference_images.runtime.tls import TlsConfigError
    from xds_server.cells.peers import split_address
    from xds_server.controlplane.main import ListenError, ServeOptions, serve
    from xds_server.endpoints.source import EndpointSourceError
    from xds_server.ratelimit.redis_auth import RedisUrlError
    from xds_server.sources.config import SourceError

    peers = tuple(a.strip() for a in args.peers.split(",") if a.strip())
    for address in peers:
        try:
            split_address(address)
        except ValueError as err:
            print(f"error: --peers: {err}", file=sys.stderr)
            return 2
    if args.ratelimit_address and args.ratelimit_port is None:
        print("error: --ratelimit-address needs --ratelimit-port (the port Envoy dials there)", file=sys.stderr)
        return 2
    opts = ServeOptions(
        config_dir=Path(args.config), state_dir=Path(args.state),
        endpoints_file=Path(args.endpoints) if args.endpoints else None,
        host=args.host, xds_port=args.xds_port, status_port=args.status_port,
        listen_address=args.listen_address,
        ratelimit_port=args.ratelimit_port, ratelimit_redis_url=args.ratelimit_redis_url,
        audit_log=audit_cli.open_from_args(args), audit_seal_after_s=args.audit_seal_after,
        ratelimit_address=args.ratelimit_address, ratelimit_shared_port=args.ratelimit_shared_port,
        endpoints_from=args.endpoints_from, kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        namespace=args.namespace,
        upstream_tls_dir=args.upstream_tls_dir, tls_dir=Path(args.tls_dir) if args.tls_dir else None,
        config_source=args.config_source, poll_seconds=args.poll_seconds,
        source_dir=Path(args.source_dir) if args.source_dir else None,
        local_cell_ports=args.local_cell_ports, region=args.region,
        peers=peers, signing_key=Path(args.signing_key) if args.signing_key else None,
    )
    try:
        asyncio.run(serve(opts))
    except EndpointSourceError as err:
        print(f"error: --endpoints-from {args.endpoints_from}: {err}", file=sys.stderr)
        return 2
    except SourceError as err:
        print(f"error: --config-source: {err}", file=sys.stderr)
        return 2
    except (TlsConfigError, RedisUrlError, ListenError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace) -> int:
    from xds_server.local.platform import LocalPlatform, PlatformOptions

    for flag, value in (("--gateways", args.gateways), ("--gateways-per-cell", args.gateways_per_cell)):
        if value < 1:
            print(f"error: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    opts = PlatformOptions(config_dir=Path(args.config), state_dir=Path(args.state),
                           xds_port=args.xds_port, status_port=args.status_port,
                           gateways_per_region=args.gateways, gateways_per_cell=args.gateways_per_cell,
                           ratelimit_redis_url=args.ratelimit_redis_url,
                           control_planes=args.control_planes)
    return LocalPlatform(opts).run_foreground()


def _status(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    url = f"http://{args.host}:{args.status_port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status = json.load(resp)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        print(f"error: no control plane answers at {url} ({getattr(err, 'reason', err)}); is it running?",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        from xds_server.status_table import render

        print(render(status, max_rows=None if args.all else DEFAULT_STATUS_ROWS))
    return 0


# Gateways and cells `fairshare status` lists before the rest become a count (--all: every one).
DEFAULT_STATUS_ROWS = 50


def _models(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from xds_server.compiler import EndpointDirectory
    from xds_server.controlplane import inventory
    from xds_server.controlplane.admin_client import AdminClient

    cfg = load_config(args.config)
    if args.tenant is not None and args.tenant not in cfg.tenants:
        print(f"error: unknown tenant {args.tenant!r} (known: {capped(sorted(cfg.tenants))})", file=sys.stderr)
        return 2
    # Where the replicas are: the running control plane's status, else the endpoints file `run` wrote.
    endpoints, source = EndpointDirectory(), "no running platform found"
    url = f"http://{args.host}:{args.status_port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            endpoints, source = inventory.endpoints_from_status(json.load(resp)), url
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        path = Path(args.endpoints) if args.endpoints else Path(args.state) / "run" / "endpoints.yaml"
        if path.is_file():
            endpoints, source = EndpointDirectory.load(path), str(path)
            # Perhaps an old run's addresses: said, not taken silently for what runs now.
            print(f"no control plane at {args.host}:{args.status_port}; replicas from {path} (may be stale)",
                  file=sys.stderr)
    client = AdminClient.for_operator(cfg, Path(args.tls_dir) if args.tls_dir else None, Path(args.state))
    found = inventory.build(cfg, endpoints, args.tenant, client=client)
    if args.json:
        print(json.dumps({**found.to_json(), "replicas_from": source}, indent=2))
    else:
        print(found.render())
        for line in found.warnings():  # the first few, on stderr beside the table; --json lists every one
            print(line, file=sys.stderr)
        if not endpoints.by_pool:
            print(f"(residency unknown: {source}; start the platform with `fairshare run`)")
    return 0


def _chart_values(args: argparse.Namespace) -> int:
    from xds_server.deploy.helm_values import chart_values, dump_values

    cfg = load_config(args.config)
    from xds_server.policy.backends import default_policy_dir

    policy = Path(args.policy) if args.policy else default_policy_dir()
    text = dump_values(chart_values(cfg, args.region, Path(args.config), policy, args.config_source))
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        refused = _write_output(Path(args.output), text.encode())
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        print(f"wrote Helm values for region {args.region} to {args.output}", file=sys.stderr)
    return 0


def _output_folder(path: str | None, flag: str) -> str | None:
    """Why an output file's path cannot be written, where that is known before the work: it is a folder."""
    return f"{flag} {path} is a folder: name a file in it" if path is not None and Path(path).is_dir() else None


def _write_output(path: Path, data: bytes, flag: str = "-o") -> str | None:
    """Write a command's output file (its folder made if missing); else why it cannot be, for an error."""
    if (refused := _output_folder(str(path), flag)) is not None:
        return refused
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as err:
        return f"{flag} {path}: cannot write it ({err.strerror or err})"
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairshare", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def cmd(name: str, func, help_: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--config", default="config", help="config directory (default: config/)")
        sp.add_argument("--state", default=str(DEFAULT_STATE), help="local state: signing key, run files")
        sp.add_argument("--policy", default=None,
                        help="policy directory (default: $FAIRSHARE_POLICY_DIR, else the repository's policy/)")
        sp.set_defaults(func=func)
        return sp

    v = cmd("validate", _validate, "validate the config and report every problem")
    v.add_argument("--json", action="store_true", help="every problem as JSON (file, field, message)")
    t = cmd("token", _token, "print a credential for TENANT on the last line")
    t.add_argument("tenant")
    t.add_argument("--ttl", type=_ttl, default=None, help="lifetime in seconds (default: platform.yaml)")
    c = cmd("compile", _compile, "compile the config and print each snapshot's version, size and resource counts")
    c.add_argument("--json", action="store_true", help="every snapshot's resources by name, as JSON")
    c.add_argument("--endpoints", default=None,
                   help="endpoints file (as written by `fairshare run`: the versions match the running "
                   "control plane's only with the same endpoints)")
    mo = cmd("models", _models, "list every model (catalog and tenants' own): format, pool, versions, where it "
             "is resident now and its hit rate")
    mo.add_argument("--tenant", default=None, help="only the models this tenant may call (its own and its grants)")
    mo.add_argument("--json", action="store_true", help="machine-readable output")
    mo.add_argument("--host", default="127.0.0.1", help="the control plane's host (for the replicas)")
    mo.add_argument("--status-port", type=_port, default=18001, help="the control plane's status port")
    mo.add_argument("--endpoints", default=None, help="endpoints file, when no control plane answers "
                    "(default: <state>/run/endpoints.yaml)")
    mo.add_argument("--tls-dir", default=None, metavar="DIR",
                    help="the control plane's certificate (tls.crt, tls.key, ca.crt) for the replicas' admin "
                    "ports with mutual TLS on (default: <state>/tls/controlplane, `fairshare run`'s)")
    cv = cmd("chart-values", _chart_values, "write the Helm chart's values for one region from the config")
    cv.add_argument("--region", required=True, help="the region the chart is installed in")
    cv.add_argument("-o", "--output", default=None, help="values file to write (default: stdout)")
    cv.add_argument("--config-source", default=None, metavar="s3://BUCKET/KEY | git",
                    help="the chart's config.source: the control plane reads config and policies from there, so "
                         "they are left out of the values (no ConfigMap, no 1 MiB cap on them)")
    for name, func, help_ in (("serve", _serve, "run the control plane (xDS + status)"),
                              ("run", _run, "run the whole platform locally"),
                              ("status", _status, "show the running control plane's status")):
        sp = cmd(name, func, help_)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--xds-port", type=_port, default=18000)
        sp.add_argument("--status-port", type=_port, default=18001)
        if name == "serve":
            sp.add_argument("--endpoints", default=None)
            sp.add_argument("--endpoints-from", choices=("file", "kubernetes"), default="file",
                            help="where the runtime replicas come from: the --endpoints file (default) or "
                                 "the pool Services' EndpointSlices")
            sp.add_argument("--kubeconfig", default=None, help="with --endpoints-from kubernetes, outside a "
                            "cluster (default: in-cluster config, else $KUBECONFIG or ~/.kube/config)")
            sp.add_argument("--namespace", default=None, help="with --endpoints-from kubernetes: the pools' "
                            "namespace (default: the pod's own, else the kubeconfig context's)")
            sp.add_argument("--listen-address", default="0.0.0.0", help="address the gateway listener binds")
            sp.add_argument("--config-source", default=None, metavar="s3://BUCKET/KEY | git:PATH",
                            help="read the config and policies from a bundle on S3 (`fairshare config publish`; "
                                 "AWS_ENDPOINT_URL for moto) or from a git checkout a sidecar keeps current "
                                 "(its config/ and policy/); default: the --config folder")
            sp.add_argument("--poll-seconds", type=float, default=10.0,
                            help="with an s3:// config source: how often its version is checked (default: 10)")
            sp.add_argument("--source-dir", default=None,
                            help="with an s3:// config source: where revisions are unpacked (default: "
                                 "<state>/config-source; the chart uses an emptyDir, its state may be a Secret)")
            audit_cli.add_serve_arguments(sp)
            sp.add_argument("--ratelimit-port", type=_port, default=None,
                            help="rate-limit service port (default: platform.yaml ratelimit.port)")
            sp.add_argument("--ratelimit-address", default=None,
                            help="where Envoy dials the rate-limit service, with --ratelimit-port (default: "
                                 "--host); a name all replicas share, e.g. the control plane's Service")
            sp.add_argument("--signing-key", default=None, metavar="FILE",
                            help="the token signing key (PEM, EC P-256), loaded and never created: every "
                                 "replica's, from a Secret (default: <state>/signing-key.pem, made if missing)")
            sp.add_argument("--region", default=None,
                            help="the region this control plane runs in (the chart sets it): only its tenants' "
                                 "local model artifacts are read and checked, the ones its cluster holds")
            sp.add_argument("--local-cell-ports", action="store_true",
                            help="every cell of a region on this machine: cell k listens on the region's "
                                 "gateway_port + 1 + k (the front tier on gateway_port); in a cluster each cell's "
                                 "pods listen on gateway_port")
            sp.add_argument("--peers", default="", metavar="HOST:PORT[,HOST:PORT...]",
                            help="every control-plane replica's status port (this one's may be among them; a "
                                 "name resolves to every address it has, as a headless Service does): a move "
                                 "between cells takes each step once every replica's Envoys acknowledged it")
            sp.add_argument("--ratelimit-shared-port", action="store_true",
                            help="share the rate-limit port with other control planes on this host (SO_REUSEPORT)")
            sp.add_argument("--upstream-tls-dir", default=None,
                            help="the gateways' upstream-TLS SDS directory (default: platform.yaml "
                                 "gateway.upstream_tls.sds_dir)")
            sp.add_argument("--tls-dir", default=None,
                            help="the control plane's certificate (tls.crt, tls.key, ca.crt): xDS and the "
                                 "rate-limit service serve mutual TLS to the gateway's certificate only")
        if name == "status":
            sp.add_argument("--json", action="store_true",
                            help="the control plane's status as JSON (every field, every gateway; epoch times)")
            sp.add_argument("--all", action="store_true",
                            help=f"list every gateway and cell (default: the {DEFAULT_STATUS_ROWS} that need "
                                 "attention most, then counts)")
        if name in ("serve", "run"):
            sp.add_argument("--ratelimit-redis-url", type=_redis_url, default=None,
                            help="keep rate-limit counters in this Redis (default: platform.yaml ratelimit)")
        if name == "run":
            sp.add_argument("--gateways", type=int, default=1, help="Envoy gateways per region (default: 1); in "
                            "a region with cells, front-tier Envoys")
            sp.add_argument("--gateways-per-cell", type=int, default=1,
                            help="in a region with cells (regions.yaml cells): Envoys per cell (default: 1)")
            sp.add_argument("--control-planes", type=_at_least_one, default=None,
                            help="control-plane replicas on the same config, every Envoy connected to one of "
                                 "them (default: platform.yaml controlplane.replicas, else 1); more than one "
                                 "shares rate limits in Redis (a local redis-server unless --ratelimit-redis-url)")
    _policy_parser(sub)
    config_cli.add_commands(sub)
    audit_cli.add_commands(sub, str(DEFAULT_STATE))
    from xds_server.offboard.cli import add_parsers as offboard_parsers

    offboard_parsers(sub, DEFAULT_STATE)
    return p


def _whole_number(text: str, low: int, high: int | None = None, *, noun: str = "a whole number",
                  unit: str = "") -> int:
    """An argument's integer within [low, high] (high None: no top), or argparse's error saying which."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if value < low or (high is not None and value > high):
        bound = f"at least {low:,}" if high is None else f"between {low:,} and {high:,}"
        raise argparse.ArgumentTypeError(f"must be {bound}{unit}, got {value}")
    return value


def _port(text: str) -> int:
    return _whole_number(text, 1, 65535, noun="a port number")


def _at_least_one(text: str) -> int:
    return _whole_number(text, 1)


def _redis_url(text: str) -> str:
    """Checked as platform.yaml's ratelimit.redis_url is (the message hides the password): a malformed one
    had been a traceback from the Redis client once `serve` was starting the rate-limit service."""
    from xds_server.config.urls import redis_url_problem

    if (problem := redis_url_problem(text)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _ttl(text: str) -> int:
    """A token's lifetime: within what platform.yaml's auth.token_ttl_seconds may be, at least a second."""
    from xds_server.config.model import AuthSettings

    most = next(m.le for m in AuthSettings.model_fields["token_ttl_seconds"].metadata if hasattr(m, "le"))
    return _whole_number(text, 1, most, noun="a whole number of seconds", unit=" seconds")


def _policy_dir(args: argparse.Namespace) -> Path:
    from xds_server.policy.backends import default_policy_dir

    return Path(args.policy) if args.policy else default_policy_dir()


def _policy_test(args: argparse.Namespace) -> int:
    from xds_server.policy.engine import PolicyError
    from xds_server.policy.testing import run_suites

    if (refused := _output_folder(args.json, "--json")) is not None:  # before the suites' minutes, not after
        print(f"error: {refused}", file=sys.stderr)
        return 2
    try:
        report = run_suites(_policy_dir(args), progress=lambda line: print(line, flush=True))
    except PolicyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.render())
    if args.json:
        if (refused := _write_output(Path(args.json), json.dumps(report.to_json(), indent=2).encode(),
                                     "--json")) is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        print(f"wrote {args.json}")
    return 0 if report.ok else 1


def _policy_bundle(args: argparse.Namespace) -> int:
    from xds_server.policy.bundle import BundleError, build_bundle, parse_s3_url, publish_bundle
    from xds_server.policy.engine import PolicyError
    from xds_server.policy.resolve import platform_document
    from xds_server.policy.sources import PolicySources

    policy = _policy_dir(args)
    try:
        if args.publish:
            parse_s3_url(args.publish)  # a typo in the URL is reported before any work
        sources = PolicySources.load(policy)
        # The whole config is validated (policies included): a bundle is only built for a config they pass.
        cfg = load_config(args.config, policy_dir=policy)
        bundle = build_bundle(sources, platform_document(cfg.tiers, cfg.regions, cfg.models))
        out = Path(args.output)
        refused = _write_output(out, bundle.archive)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        print(f"wrote OPA bundle {out}: revision {bundle.revision}, {len(sources.modules)} policies, "
              f"{len(bundle.archive)} bytes")
        if args.publish:
            etag = publish_bundle(bundle, args.publish)
            print(f"published to {args.publish} (ETag {etag})")
    except (PolicyError, BundleError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from xds_server.config.model import PlatformConfig
    from xds_server.policy.check import Report, Section, check_config, check_manifests, check_plan

    policy = _policy_dir(args)
    if (refused := _output_folder(args.json, "--json")) is not None:  # before the checks, not after
        print(f"error: {refused}", file=sys.stderr)
        return 2
    sections: list[Section] = []
    config: PlatformConfig | None = None
    if not args.no_config:
        section, config = check_config(Path(args.config))
        sections.append(section)
    if args.manifests:
        sections.append(check_manifests([Path(p) for p in args.manifests], policy))
    if args.plan:
        sections.append(check_plan(Path(args.plan), config, policy))
    if not sections:
        print("error: nothing to check (give --manifests or --plan with --no-config)", file=sys.stderr)
        return 2
    report = Report(sections)
    print(report.render())
    if args.json and (refused := _write_output(Path(args.json), json.dumps(report.to_json(), indent=2).encode(),
                                               "--json")) is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    return 1 if any(s.violations for s in sections) else 2 if not report.ok else 0


def _policy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`fairshare policy <command>`: one add_parser per command."""
    group = sub.add_parser("policy", help="test, bundle and check the Rego policies (policy/)",
                           description="test, bundle and check the Rego policies (policy/)")
    commands = group.add_subparsers(required=True, metavar="POLICY_COMMAND")

    def pcmd(name: str, func, help_: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sp = commands.add_parser(name, help=help_, description=help_)
        sp.add_argument("--policy", default=None,
                        help="policy directory (default: $FAIRSHARE_POLICY_DIR, else the repository's policy/)")
        sp.set_defaults(func=func)
        return sp

    t = pcmd("test", _policy_test, "run every _test.rego on the embedded engine and on OPA, with a coverage gate")
    t.add_argument("--json", default=None, metavar="FILE", help="also write the full report as JSON")
    c = pcmd("check", _policy_check, "check the tenant config, rendered manifests and a Terraform plan against "
             "the policies; exits 1 on any violation")
    c.add_argument("--config", default="config", help="config directory (default: config/)")
    c.add_argument("--manifests", nargs="*", default=[], metavar="PATH",
                   help="rendered Kubernetes manifests (files or directories of YAML) for policy/admission")
    c.add_argument("--plan", default=None, metavar="FILE",
                   help="`terraform show -json` of a plan, for policy/infrastructure")
    c.add_argument("--no-config", action="store_true", help="skip the tenant config (manifests or plan only)")
    c.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON for machines")
    b = pcmd("bundle", _policy_bundle, "build an OPA bundle (policies + platform data), optionally publish it to S3")
    b.add_argument("--config", default="config", help="config directory (default: config/)")
    b.add_argument("-o", "--output", default=str(DEFAULT_STATE / "policy-bundle.tar.gz"),
                   help="bundle file to write (default: .fairshare/policy-bundle.tar.gz)")
    b.add_argument("--publish", default=None, metavar="s3://BUCKET/KEY",
                   help="upload the bundle there (boto3's credentials; AWS_ENDPOINT_URL for S3-compatible stores)")


# The commands that load and decide the whole config before they print anything (seconds to a minute at
# thousands of tenants): a terminal is told they are still at it.
_LOADS_THE_CONFIG = frozenset({_validate, _compile, _models, _chart_values, _policy_check})


if __name__ == "__main__":
    sys.exit(main())
