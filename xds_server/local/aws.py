"""A local AWS endpoint for rolling out a region without a cloud: a moto server set up the way the region
root needs it (AWS-managed IAM policies loaded, the Terraform state bucket created), left running in the
background for `make region-plan/apply/destroy`, and a preflight check that names what is missing.

    python -m xds_server.local.aws start [--port 4566] [--dir .fairshare/local-aws]   (make local-aws)
    python -m xds_server.local.aws check --endpoint URL --bucket B                     (make region-init)
    python -m xds_server.local.aws stop                                                (make local-aws-stop)

moto loads AWS-managed policies (the EKS roles attach AmazonEKSClusterPolicy and others) only with
MOTO_IAM_LOAD_MANAGED_POLICIES=true; without it an apply fails halfway, after the network exists.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xds_server.local.processes import wait_http

DEFAULT_PORT = 4566
DEFAULT_DIR = Path(".fairshare/local-aws")
STATE_BUCKET = "fairshare-tfstate"
# The state bucket's region; every serving region's resources live in their own region of the same server.
STATE_REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
MOTO_ENV = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **FAKE_CREDENTIALS}
# A managed policy the cluster module attaches: present only when moto loaded the managed policies.
PROBE_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"


class LocalAwsError(RuntimeError):
    """What is wrong with the local endpoint, and the command that fixes it."""


def moto_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """moto_server from this virtualenv when present (the one `make setup` installs), else from PATH."""
    local = Path(sys.executable).with_name("moto_server")
    binary = str(local) if local.exists() else shutil.which("moto_server")
    if binary is None:
        raise LocalAwsError("moto_server is not installed; run `make setup` (it installs moto[server])")
    return [binary, "-H", host, "-p", str(port)]


@contextlib.contextmanager
def moto_server(log_file: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A moto server on a free port for as long as the block runs (tests, benchmarks); yields its URL.
    It dies with this process, and its log names what went wrong when it does not answer."""
    from xds_server.local.processes import Child, free_port

    port = free_port()
    child = Child("moto", moto_argv(port), log_file, env=env).start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/moto-api/", 60, proc=child.proc, log_file=log_file)
        yield endpoint
    finally:
        child.stop()


def client(endpoint: str, service: str, region: str = STATE_REGION) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="test", aws_secret_access_key="test")


def ensure_bucket(endpoint: str, bucket: str, region: str = STATE_REGION) -> bool:
    """Create the state bucket unless it exists; True when it was created."""
    s3 = client(endpoint, "s3", region)
    if bucket in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        return False
    s3.create_bucket(Bucket=bucket)
    return True


def check(endpoint: str, bucket: str | None) -> list[str]:
    """Every reason a rollout against `endpoint` would fail, each with its fix; empty when ready."""
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/moto-api/", timeout=5):
            pass
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return [f"nothing answers at AWS_ENDPOINT={endpoint} ({err}); start one with `make local-aws`"]
    problems: list[str] = []
    from botocore.exceptions import ClientError

    try:
        client(endpoint, "iam").get_policy(PolicyArn=PROBE_POLICY_ARN)
    except ClientError:
        problems.append(f"the server at {endpoint} has no AWS-managed IAM policies (the EKS roles attach "
                        f"{PROBE_POLICY_ARN.rsplit('/', 1)[-1]}): start moto with MOTO_IAM_LOAD_MANAGED_POLICIES=true, "
                        "or use `make local-aws`, which does")
    if bucket:
        s3 = client(endpoint, "s3")
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            problems.append(f"the state bucket {bucket!r} does not exist at {endpoint}; create it with "
                            f"`make local-aws` (it creates {STATE_BUCKET!r}) or "
                            f"`aws --endpoint-url {endpoint} s3 mb s3://{bucket}`")
    return problems


@dataclass(frozen=True)
class Handle:
    """Where a started endpoint keeps its pid, log and the environment to export."""

    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "moto.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "moto.log"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


def start(root: Path, port: int, bucket: str) -> str:
    """Start (or find running) a moto server detached from this process; returns its URL."""
    handle = Handle(root)
    endpoint = f"http://127.0.0.1:{port}"
    if handle.running_pid() is None:
        root.mkdir(parents=True, exist_ok=True)
        with handle.log_file.open("ab") as log:
            # A new session: it keeps running after `make local-aws` returns, until local-aws-stop.
            proc = subprocess.Popen(moto_argv(port), stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **MOTO_ENV}, start_new_session=True)
        handle.pid_file.write_text(str(proc.pid))
        try:
            wait_http(f"{endpoint}/moto-api/", timeout=60, proc=proc, log_file=handle.log_file)
        except (RuntimeError, TimeoutError) as err:
            with contextlib.suppress(OSError):
                proc.terminate()
            raise LocalAwsError(f"moto did not start on port {port}: {err}\n(is the port taken? "
                                f"try `make local-aws LOCAL_AWS_PORT=<another>`)") from err
        print(f"started a local AWS endpoint (moto, managed IAM policies loaded) at {endpoint}, "
              f"pid {proc.pid}, log {handle.log_file}")
    else:
        print(f"a local AWS endpoint is already running at {endpoint} (pid {handle.running_pid()})")
    created = ensure_bucket(endpoint, bucket)
    print(f"state bucket s3://{bucket} {'created' if created else 'exists'}")
    handle.env_file.write_text(f"export AWS_ENDPOINT={endpoint}\nexport TF_STATE_BUCKET={bucket}\n")
    return endpoint


def stop(root: Path) -> None:
    handle = Handle(root)
    pid = handle.running_pid()
    if pid is None:
        print("no local AWS endpoint is running")
        return
    os.killpg(pid, signal.SIGTERM)
    for _ in range(50):
        if handle.running_pid() is None:
            break
        time.sleep(0.1)
    handle.pid_file.unlink(missing_ok=True)
    print(f"stopped the local AWS endpoint (pid {pid}); everything it held is gone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds_server.local.aws", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start moto in the background and create the state bucket")
    p_start.add_argument("--port", type=int, default=DEFAULT_PORT)
    p_start.add_argument("--bucket", default=STATE_BUCKET)
    p_start.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p_stop = sub.add_parser("stop", help="stop the background moto server")
    p_stop.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p_check = sub.add_parser("check", help="is this endpoint ready for a region rollout?")
    p_check.add_argument("--endpoint", required=True)
    p_check.add_argument("--bucket", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            endpoint = start(args.dir, args.port, args.bucket)
            print("next, in this shell:\n"
                  f"  export AWS_ENDPOINT={endpoint} TF_STATE_BUCKET={args.bucket}   (or: source {args.dir}/env)\n"
                  "  make region-plan REGION=eu-west-1 && make region-apply REGION=eu-west-1\n"
                  "  make region-destroy REGION=eu-west-1 AUTO_APPROVE=1 && make local-aws-stop")
        elif args.command == "stop":
            stop(args.dir)
        else:
            problems = check(args.endpoint, args.bucket)
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            return 2 if problems else 0
    except LocalAwsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
