"""`fairshare config publish`: validate the config whole, bundle it with the policies, and upload it as a
new version of the S3 object a control plane reads (`fairshare serve --config-source s3://BUCKET/KEY`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("config", help="publish the config and policies for control planes to read",
                           description="publish the config and policies for control planes to read")
    commands = group.add_subparsers(required=True, metavar="CONFIG_COMMAND")
    p = commands.add_parser("publish", help="validate, bundle and upload the config + policies to S3 (versioned)",
                            description="validate, bundle and upload the config + policies to S3 (versioned); "
                                        "prints the new version id")
    p.add_argument("--bucket", required=True, help="the bucket (versioning on, so every revision is kept)")
    p.add_argument("--key", required=True, help="the object key, e.g. fairshare/config.tar.gz")
    p.add_argument("--config", default="config", help="config directory (default: config/)")
    p.add_argument("--policy", default=None,
                   help="policy directory (default: $FAIRSHARE_POLICY_DIR, else the repository's policy/)")
    p.add_argument("--author", default=None,
                   help="who publishes (default: the config's last git commit author, else $USER)")
    p.add_argument("-o", "--output", default=None, help="also write the bundle to this file")
    p.set_defaults(func=_publish)


def _publish(args: argparse.Namespace) -> int:
    from xds_server.config import ConfigError
    from xds_server.policy.backends import default_policy_dir
    from xds_server.policy.bundle import BundleError
    from xds_server.policy.engine import PolicyError
    from xds_server.sources.config.bundle import build_config_bundle, default_author, publish_config_bundle

    config = Path(args.config)
    policy = Path(args.policy) if args.policy else default_policy_dir()
    try:
        bundle = build_config_bundle(config, policy)
    except ConfigError as err:
        print(f"error: not published: the config is refused\n{err.render()}", file=sys.stderr)
        return 2
    except (PolicyError, BundleError, OSError) as err:
        print(f"error: not published: {err}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_bytes(bundle.archive)
    author = args.author or default_author(config)
    try:
        published = publish_config_bundle(bundle, args.bucket, args.key, author, origin=str(config.absolute()))
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"published s3://{published.bucket}/{published.key}: revision {published.revision}, "
          f"{published.size:,} bytes, author {author or 'unknown'}")
    if published.version_id is None:
        print(f"warning: bucket {published.bucket} is not versioned: earlier revisions are overwritten, and "
              "control planes see a change by its ETag alone", file=sys.stderr)
        print("version_id: none")
    else:
        print(f"version_id: {published.version_id}")
    return 0
