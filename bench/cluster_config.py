"""bench-cluster, part `config`: the control plane with 10,000 tenants read from a bundle on S3 (a real moto
server) against the same 10,000 tenants from the local folder, in the same run.

    python -m bench.cluster_config [--tenants N] [--poll-seconds S]

Each mode runs `fairshare serve` as its own process (as in a pod): memory is that process's resident set
(and its policy worker's), time to applied is from the process's start to the status endpoint serving the
config. Then one tenant is changed: locally by writing its file, on S3 by publishing a new revision, and the
time until the control plane serves it is measured (on S3 it includes up to one poll interval). The bundle's
size is set against the 1 MiB a ConfigMap holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import yaml

from bench import report, synth
from xds_server.deploy.helm_values import CONFIGMAP_LIMIT
from xds_server.local.aws import moto_server
from xds_server.local.processes import Child, free_port, wait_http
from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.sources.config.bundle import build_config_bundle, config_files, publish_config_bundle

NAME = "cluster_config"
BUCKET = "fairshare-config-bench"
KEY = "fairshare/config.tar.gz"
BIN = Path(sys.executable).parent


def progress(message: str) -> None:
    report.progress(NAME, message)


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


def memory(pid: int) -> dict[str, int]:
    """Resident and peak resident bytes of the control plane, and of it with its children (the embedded
    policy engine's worker)."""
    def read(p: int) -> tuple[int, int]:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    rss, peak = read(pid)
    children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    child_rss = sum(read(c)[0] for c in children if Path(f"/proc/{c}").exists())
    return {"rss_bytes": rss, "peak_rss_bytes": peak, "rss_with_workers_bytes": rss + child_rss}


def serve_once(label: str, args: list[str], root: Path, change: Any, is_changed: Any) -> dict[str, Any]:
    """Start `fairshare serve` with `args`, time it to serving, measure memory, then apply `change` and time
    until `is_changed(status)`."""
    status_port = free_port()
    log = root / f"{label}.log"
    cmd = [str(BIN / "fairshare"), "serve", *args, "--state", str(root / f"state-{label}"), "--xds-port",
           str(free_port()), "--status-port", str(status_port), "--ratelimit-port", str(free_port())]
    started = time.perf_counter()
    child = Child(f"control-plane-{label}", cmd, log).start()
    try:
        wait_http(f"http://127.0.0.1:{status_port}/healthz", timeout=600, proc=child.proc, log_file=log)
        applied_s = time.perf_counter() - started
        first = status(status_port)
        assert child.proc is not None
        mem = memory(child.proc.pid)
        progress(f"{label}: {first['tenants']} tenants served after {applied_s:.1f} s, "
                 f"RSS {mem['rss_bytes'] / 2**20:.0f} MiB (peak {mem['peak_rss_bytes'] / 2**20:.0f} MiB)")
        t0 = time.perf_counter()
        prepared_s = change() or 0.0  # what the change spent before it could be seen (building the bundle)
        changed_s: float | None = None
        while time.perf_counter() < t0 + 300:
            try:
                if is_changed(status(status_port), first):
                    changed_s = time.perf_counter() - t0
                    break
            except (urllib.error.URLError, TimeoutError):
                pass
            time.sleep(0.05)
        progress(f"{label}: one tenant's change served after {changed_s if changed_s is not None else 'n/a'} s")
        after = None if changed_s is None else changed_s - prepared_s
        progress(f"{label}: ... of which {after if after is not None else 'n/a'} s after it was published")
        return {"tenants": first["tenants"], "time_to_applied_s": applied_s, **mem,
                "rss_after_change_bytes": memory(child.proc.pid)["rss_bytes"], "change_served_s": changed_s,
                "change_served_after_publish_s": after,
                "revision": (first.get("config_source") or {}).get("serving")}
    finally:
        child.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fairshare-bench-config-"))
    config = synth.write_config(root / "config", args.tenants)
    # No upstream TLS: there is no local CA here for Envoy's pre-validation to find (both modes alike).
    platform = yaml.safe_load((config / "platform.yaml").read_text())
    platform.setdefault("gateway", {})["upstream_tls"] = {"enabled": False}
    (config / "platform.yaml").write_text(yaml.safe_dump(platform))
    raw_bytes = sum(len(b) for b in config_files(config).values())
    progress(f"{args.tenants} tenants written ({raw_bytes:,} bytes of config)")

    moto = contextlib.ExitStack()
    endpoint = moto.enter_context(moto_server(root / "moto.log"))
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "FAIRSHARE_POLICY_DIR": str(DEFAULT_POLICY_DIR)})
    os.environ.pop("AWS_PROFILE", None)
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        t0 = time.perf_counter()
        bundle = build_config_bundle(config, DEFAULT_POLICY_DIR)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        published = publish_config_bundle(bundle, BUCKET, KEY, "bench")
        upload_s = time.perf_counter() - t0
        progress(f"bundle: {published.size:,} bytes ({published.size / CONFIGMAP_LIMIT:.2f} of a ConfigMap), "
                 f"built in {build_s:.1f} s, uploaded in {upload_s:.2f} s, version {published.version_id}")

        def edit_local() -> None:
            synth.write_tenant(config, 1, split=(0, 100))

        def version_changed(now: dict[str, Any], first: dict[str, Any]) -> bool:
            return bool(now["config_version"] and now["config_version"] != first["config_version"])

        local = serve_once("local", ["--config", str(config)], root, edit_local, version_changed)

        def publish_edit() -> float:
            t0 = time.perf_counter()
            synth.write_tenant(config, 2, split=(0, 100))
            publish_config_bundle(build_config_bundle(config, DEFAULT_POLICY_DIR), BUCKET, KEY, "bench")
            return time.perf_counter() - t0

        def revision_changed(now: dict[str, Any], first: dict[str, Any]) -> bool:
            serving = (now.get("config_source") or {}).get("serving") or {}
            return bool(version_changed(now, first) and serving.get("id") != first["config_source"]["serving"]["id"])

        # The edit's clock includes building and uploading the bundle, as `make config-publish` would.
        bucket = serve_once("s3", ["--config-source", f"s3://{BUCKET}/{KEY}", "--poll-seconds",
                                   str(args.poll_seconds), "--source-dir", str(root / "unpacked")],
                            root, publish_edit, revision_changed)
    finally:
        moto.close()

    ratio = {k: bucket[k] / local[k] for k in ("time_to_applied_s", "rss_bytes", "peak_rss_bytes")
             if local.get(k) and bucket.get(k)}
    results = {
        "environment": report.environment(),
        "tenants": args.tenants,
        "poll_seconds": args.poll_seconds,
        "bundle": {"bytes": published.size, "config_bytes_uncompressed": raw_bytes, "configmap_limit": CONFIGMAP_LIMIT,
                   "fraction_of_configmap": published.size / CONFIGMAP_LIMIT,
                   "uncompressed_fraction_of_configmap": raw_bytes / CONFIGMAP_LIMIT,
                   "build_s": build_s, "upload_s": upload_s},
        "local": local,
        "s3": bucket,
        "s3_over_local": ratio,
    }
    mib = 2**20

    def row(name: str, key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        a, b = local.get(key), bucket.get(key)

        def cell(v: float | None) -> str:
            return fmt.format(v / scale) if v is not None else "n/a"

        r = f"{b / a:.2f}x" if a and b else "n/a"
        return f"| {name} | {cell(a)} | {cell(b)} | {r} |"

    markdown = "\n".join([
        f"### Config from a bundle on S3 vs the local folder ({args.tenants:,} tenants, same run)", "",
        "| | local folder | S3 bundle (moto) | S3 / local |", "|---|---:|---:|---:|",
        row("time to applied (s, process start to serving)", "time_to_applied_s"),
        row("control-plane RSS after load (MiB)", "rss_bytes", mib, "{:.0f}"),
        row("peak RSS (MiB)", "peak_rss_bytes", mib, "{:.0f}"),
        row("RSS with the policy worker (MiB)", "rss_with_workers_bytes", mib, "{:.0f}"),
        row("one tenant changed -> served (s)", "change_served_s"),
        row("... from the object's new version (or the file write) to served (s)", "change_served_after_publish_s"),
        "",
        "The S3 change's first figure includes `config publish` (validating the whole config and building the "
        f"bundle); the second starts once the new version is uploaded and includes up to one poll "
        f"({args.poll_seconds:g} s). The local change is a file write seen by inotify.",
        "",
        f"Bundle: {published.size:,} bytes gzipped ({published.size / CONFIGMAP_LIMIT:.0%} of the "
        f"{CONFIGMAP_LIMIT:,}-byte ConfigMap cap); the same config uncompressed, as a ConfigMap would hold it: "
        f"{raw_bytes:,} bytes ({raw_bytes / CONFIGMAP_LIMIT:.1f}x the cap). Built in {build_s:.1f} s, uploaded "
        f"in {upload_s:.2f} s.",
    ])
    path = report.write_results(NAME, results, markdown)
    progress(f"wrote {path}")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
