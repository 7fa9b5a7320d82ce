"""`fairshare`: the platform engineer's command line. Every command takes --config DIR (default config/)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from xds_server.auth.keys import SigningKey, SigningKeyError
from xds_server.auth.tokens import UnknownTenant, issue_for_config
from xds_server.config import ConfigError, load_config

DEFAULT_STATE = Path(os.environ.get("FAIRSHARE_STATE", ".fairshare"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("FAIRSHARE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except (UnknownTenant, SigningKeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(f"config OK: {len(cfg.tenants)} tenants, {len(cfg.models)} models, {len(cfg.regions)} regions")
    return 0


def _token(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    key = SigningKey.load_or_create(args.state)
    print(issue_for_config(cfg, key, args.tenant, args.ttl))
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
    print(json.dumps(summary, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from xds_server.controlplane.main import ServeOptions, serve

    asyncio.run(serve(ServeOptions(
        config_dir=Path(args.config), state_dir=Path(args.state),
        endpoints_file=Path(args.endpoints) if args.endpoints else None,
        host=args.host, xds_port=args.xds_port, status_port=args.status_port,
        listen_address=args.listen_address,
        ratelimit_port=args.ratelimit_port, ratelimit_redis_url=args.ratelimit_redis_url,
    )))
    return 0


def _run(args: argparse.Namespace) -> int:
    from xds_server.local.platform import LocalPlatform, PlatformOptions

    opts = PlatformOptions(config_dir=Path(args.config), state_dir=Path(args.state),
                           xds_port=args.xds_port, status_port=args.status_port,
                           gateways_per_region=args.gateways, ratelimit_redis_url=args.ratelimit_redis_url)
    return LocalPlatform(opts).run_foreground()


def _status(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    url = f"http://{args.host}:{args.status_port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            print(json.dumps(json.load(resp), indent=2))
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        print(f"error: no control plane answers at {url} ({getattr(err, 'reason', err)}); is it running?",
              file=sys.stderr)
        return 1
    return 0


def _chart_values(args: argparse.Namespace) -> int:
    from xds_server.deploy.helm_values import chart_values, dump_values

    cfg = load_config(args.config)
    policy = Path(args.policy) if args.policy else None
    text = dump_values(chart_values(cfg, args.region, Path(args.config), policy))
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote Helm values for region {args.region} to {args.output}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairshare", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def cmd(name: str, func, help_: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--config", default="config", help="config directory (default: config/)")
        sp.add_argument("--state", default=str(DEFAULT_STATE), help="local state: signing key, run files")
        sp.set_defaults(func=func)
        return sp

    cmd("validate", _validate, "validate the config and report every problem")
    t = cmd("token", _token, "print a credential for TENANT on the last line")
    t.add_argument("tenant")
    t.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (default: platform.yaml)")
    c = cmd("compile", _compile, "compile the config and print the snapshot summary")
    c.add_argument("--endpoints", default=None, help="endpoints file (as written by `fairshare run`)")
    cv = cmd("chart-values", _chart_values, "write the Helm chart's values for one region from the config")
    cv.add_argument("--region", required=True, help="the region the chart is installed in")
    cv.add_argument("--policy", default="policy", help="policy directory shipped to the cluster (default: policy/)")
    cv.add_argument("-o", "--output", default=None, help="values file to write (default: stdout)")
    for name, func, help_ in (("serve", _serve, "run the control plane (xDS + status)"),
                              ("run", _run, "run the whole platform locally"),
                              ("status", _status, "show the running control plane's status")):
        sp = cmd(name, func, help_)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--xds-port", type=int, default=18000)
        sp.add_argument("--status-port", type=int, default=18001)
        if name == "serve":
            sp.add_argument("--endpoints", default=None)
            sp.add_argument("--listen-address", default="0.0.0.0", help="address the gateway listener binds")
            sp.add_argument("--ratelimit-port", type=int, default=None,
                            help="rate-limit service port (default: platform.yaml ratelimit.port)")
        if name in ("serve", "run"):
            sp.add_argument("--ratelimit-redis-url", default=None,
                            help="keep rate-limit counters in this Redis (default: platform.yaml ratelimit)")
        if name == "run":
            sp.add_argument("--gateways", type=int, default=1, help="Envoy gateways per region (default: 1)")
    return p


if __name__ == "__main__":
    sys.exit(main())
