"""Config sources (xds_server/sources/config): a bundle on a real moto S3 server and a git checkout whose
link a sidecar flips. A new revision is applied like a local edit; a bad or unreadable one is refused with
its reason and the last good keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from bench import synth
from xds_server.cli import main
from xds_server.config import load_config
from xds_server.controlplane.service import ControlPlane
from xds_server.local.aws import moto_server
from xds_server.local.processes import Child, free_port, wait_http
from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.policy.bundle import build_bundle
from xds_server.policy.resolve import platform_document
from xds_server.policy.sources import PolicySources
from xds_server.snapshot import ROUTE
from xds_server.sources.config import GitSource, S3Source, from_spec
from xds_server.sources.config.bundle import build_config_bundle, config_files, publish_config_bundle
from xds_server.xds.store import SnapshotStore

JWKS = '{"keys": []}'
BUCKET = "fairshare-config"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto S3 server on a free port; yields its endpoint URL."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh versioned bucket per test, with moto's endpoint and fake credentials in the environment."""
    for name, value in {"AWS_ENDPOINT_URL": s3, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("FAIRSHARE_POLICY_DIR", str(DEFAULT_POLICY_DIR))
    name = f"{BUCKET}-{request.node.name.replace('_', '-')[:40]}".lower().rstrip("-")
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def small(tmp_path: Path, tenants: int = 3) -> Path:
    """The example config with a few synthetic tenants, without upstream TLS (no local CA here for Envoy's
    pre-validation to find)."""
    config = synth.write_config(tmp_path / "config", tenants)
    platform = yaml.safe_load((config / "platform.yaml").read_text())
    platform.setdefault("gateway", {})["upstream_tls"] = {"enabled": False}
    (config / "platform.yaml").write_text(yaml.safe_dump(platform))
    return config


def publish(config: Path, bucket: str, key: str = "fairshare/config.tar.gz", author: str = "Ada <ada@example.com>"
            ) -> str:
    published = publish_config_bundle(build_config_bundle(config, DEFAULT_POLICY_DIR), bucket, key, author)
    assert published.version_id is not None
    return published.version_id


def publish_unchecked(config: Path, bucket: str, key: str = "fairshare/config.tar.gz") -> str:
    """A bundle of a config the publisher would refuse (uploaded by other means, or checked against other
    policies): the platform data comes from the example config, the files from `config`."""
    platform = load_config(synth.REPO_CONFIG, policy_dir=DEFAULT_POLICY_DIR)
    bundle = build_bundle(PolicySources.load(DEFAULT_POLICY_DIR),
                          platform_document(platform.tiers, platform.regions, platform.models), config_files(config))
    published = publish_config_bundle(bundle, bucket, key)
    assert published.version_id is not None
    return published.version_id


def routes(cp: ControlPlane, region: str = "us-east-1") -> set[str]:
    return set(cp.store.get(region).of_type(ROUTE))  # type: ignore[union-attr]


async def until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_bundle_on_s3_serves_new_revisions_and_refuses_bad_ones(bucket: str, tmp_path: Path) -> None:
    config = small(tmp_path)
    first = publish(config, bucket)
    source = S3Source(f"s3://{bucket}/fairshare/config.tar.gz", tmp_path / "state" / "config-source", 0.1)
    cp = ControlPlane(source.config_dir, None, JWKS, SnapshotStore(), config_source=source)

    async def scenario() -> None:
        outcome = cp.reload()
        assert outcome.ok, outcome.error
        assert outcome.revision is not None and outcome.revision.id == first
        assert outcome.revision.author == "Ada <ada@example.com>"
        assert "tenant/t00001" in routes(cp)
        status = cp.status()
        assert status["config_source"]["serving"]["id"] == first  # type: ignore[index]
        assert status["config_source"]["kind"] == "s3"  # type: ignore[index]

        stop = asyncio.Event()
        watcher = asyncio.create_task(cp.watch(stop))
        # A new revision with one more tenant goes live without a restart.
        synth.write_tenant(config, 3)
        second = publish(config, bucket, author="Grace <grace@example.com>")
        await until(lambda: cp.last is not None and cp.last.revision is not None and cp.last.revision.id == second,
                    "the second revision")
        assert cp.last is not None and cp.last.ok, cp.last and cp.last.error
        assert "tenant/t00003" in routes(cp)
        good_version = cp.compiled.version  # type: ignore[union-attr]

        # A revision with an invalid tenant is refused whole, with the reason; the last good keeps serving.
        (config / "tenants" / "t00004.yaml").write_text("id: t00004\ntier: platinum\n")
        synth.write_tenant(config, 5)
        bad = publish_unchecked(config, bucket)
        await until(lambda: cp.last is not None and cp.last.revision is not None and cp.last.revision.id == bad,
                    "the bad revision's outcome")
        assert cp.last is not None and not cp.last.ok
        assert cp.last.error is not None and "t00004.yaml" in cp.last.error and "platinum" in cp.last.error
        assert cp.compiled is not None and cp.compiled.version == good_version
        assert "tenant/t00005" not in routes(cp) and "tenant/t00003" in routes(cp)
        status = cp.status()
        assert status["config_source"]["serving"]["id"] == second  # type: ignore[index]
        assert status["config_source"]["refused"]["id"] == bad  # type: ignore[index]
        assert "platinum" in status["last_reload"]["error"]  # type: ignore[index]
        # The link is back on the last good revision, and only it is kept on disk.
        assert (source.config_dir / "tenants" / "t00003.yaml").is_file()
        assert not (source.config_dir / "tenants" / "t00004.yaml").exists()
        assert len(list((source.root / "revisions").iterdir())) == 1

        # A corrupt object (bytes that do not match their digest) is refused naming bucket, key and version.
        client = boto3.client("s3")
        corrupt = client.put_object(Bucket=bucket, Key="fairshare/config.tar.gz", Body=b"\x1f\x8bnot a bundle",
                                    Metadata={"sha256": hashlib.sha256(b"something else").hexdigest()})["VersionId"]
        await until(lambda: cp.last is not None and cp.last.revision is not None and cp.last.revision.id == corrupt,
                    "the corrupt revision's outcome")
        assert cp.last is not None and not cp.last.ok and cp.last.error is not None
        assert cp.last.error.startswith(f"s3://{bucket}/fairshare/config.tar.gz version {corrupt}: digest mismatch")
        # Unreadable as a bundle, with a matching digest: refused with the bundle's own problem.
        garbage = b"not a tarball"
        unreadable = client.put_object(Bucket=bucket, Key="fairshare/config.tar.gz", Body=garbage,
                                       Metadata={"sha256": hashlib.sha256(garbage).hexdigest()})["VersionId"]
        await until(lambda: cp.last is not None and cp.last.revision is not None
                    and cp.last.revision.id == unreadable, "the unreadable revision's outcome")
        assert cp.last is not None and cp.last.error is not None and "not a gzipped tar bundle" in cp.last.error
        assert cp.compiled.version == good_version and "tenant/t00003" in routes(cp)

        # Fixing the config and publishing again is served.
        (config / "tenants" / "t00004.yaml").unlink()
        fixed = publish(config, bucket)
        await until(lambda: cp.last is not None and cp.last.ok and cp.last.revision is not None
                    and cp.last.revision.id == fixed, "the fixed revision")
        assert "tenant/t00005" in routes(cp)
        stop.set()
        await asyncio.wait_for(watcher, 5)

    asyncio.run(scenario())


def test_missing_object_is_refused_by_name_then_served_once_published(bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/none/yet.tar.gz"
    source = S3Source(url, tmp_path / "cs", 0.1)
    cp = ControlPlane(source.config_dir, None, JWKS, SnapshotStore(), config_source=source)
    outcome = cp.reload()
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.startswith(f"cannot read {url}: ") and "404" in outcome.error
    assert cp.store.regions() == []
    # A policy-only bundle (`make policy-bundle`) is no config: refused saying so.
    assert main(["policy", "bundle", "--config", str(small(tmp_path)), "-o", str(tmp_path / "p.tar.gz"),
                 "--publish", url]) == 0
    client = boto3.client("s3")
    archive = (tmp_path / "p.tar.gz").read_bytes()
    client.put_object(Bucket=bucket, Key="none/yet.tar.gz", Body=archive,
                      Metadata={"sha256": hashlib.sha256(archive).hexdigest()})
    outcome = cp.reload()
    assert not outcome.ok and outcome.error is not None and "carries no tenant config" in outcome.error
    publish(tmp_path / "config", bucket, "none/yet.tar.gz")
    assert cp.reload().ok


def test_config_publish_cli_and_serve_from_s3(bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    config = small(tmp_path)
    assert main(["config", "publish", "--bucket", bucket, "--key", "c.tar.gz", "--config", str(config),
                 "--author", "Ada <ada@example.com>"]) == 0
    out = capsys.readouterr().out
    version = out.strip().splitlines()[-1].removeprefix("version_id: ")
    head = boto3.client("s3").head_object(Bucket=bucket, Key="c.tar.gz")
    assert head["VersionId"] == version and head["Metadata"]["sha256"]
    # A config the loader refuses is not published.
    (config / "tenants" / "t00009.yaml").write_text("id: t00009\ntier: platinum\n")
    assert main(["config", "publish", "--bucket", bucket, "--key", "c.tar.gz", "--config", str(config)]) == 2
    assert "platinum" in capsys.readouterr().err
    assert boto3.client("s3").head_object(Bucket=bucket, Key="c.tar.gz")["VersionId"] == version

    status_port, xds_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    child = Child("control-plane", [
        str(Path(sys.executable).parent / "fairshare"), "serve", "--config-source", f"s3://{bucket}/c.tar.gz",
        "--poll-seconds", "0.2", "--state", str(tmp_path / "state"), "--xds-port", str(xds_port),
        "--status-port", str(status_port), "--ratelimit-port", str(free_port())], log).start()
    try:
        wait_http(f"http://127.0.0.1:{status_port}/healthz", timeout=30, proc=child.proc, log_file=log)
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=5) as resp:
            status = json.load(resp)
        assert status["tenants"] == 3
        assert status["config_source"]["serving"]["id"] == version
        assert status["config_source"]["serving"]["author"] == "Ada <ada@example.com>"
        assert status["last_reload"]["revision"]["source"] == f"s3://{bucket}/c.tar.gz version {version}"
    finally:
        child.stop()


def test_source_spec_errors_are_clear(tmp_path: Path) -> None:
    from xds_server.sources.config import SourceError

    for bad, message in (("s3://bucket", "is not an S3 object URL"), ("ftp://x/y", "expected s3://bucket/key"),
                         ("git:", "needs the checkout's path")):
        with pytest.raises(SourceError, match=message):
            from_spec(bad, tmp_path, tmp_path)


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Linus", "GIT_AUTHOR_EMAIL": "linus@example.com",
           "GIT_COMMITTER_NAME": "Linus", "GIT_COMMITTER_EMAIL": "linus@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def flip(link: Path, target: Path) -> None:
    """What git-sync does: a new symlink beside the old, renamed over it."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_checkout_reloads_when_the_link_flips_to_a_new_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    synth.write_config(repo / "config", 2)
    shutil.copytree(DEFAULT_POLICY_DIR, repo / "policy")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "two tenants")
    first = git(repo, "rev-parse", "HEAD")
    root = tmp_path / "git"
    root.mkdir()
    git(repo, "worktree", "add", "-q", "--detach", str(root / ".worktrees" / first), first)
    link = root / "current"
    link.symlink_to(root / ".worktrees" / first)

    source = GitSource(link)
    cp = ControlPlane(source.config_dir, None, JWKS, SnapshotStore(), config_source=source)

    async def scenario() -> None:
        outcome = cp.reload()
        assert outcome.ok, outcome.error
        assert outcome.revision is not None and outcome.revision.id == first
        assert outcome.revision.author == "Linus <linus@example.com>"
        assert "tenant/t00002" not in routes(cp)
        stop = asyncio.Event()
        watcher = asyncio.create_task(cp.watch(stop))
        await asyncio.sleep(0.3)  # the watch is set up
        synth.write_tenant(repo / "config", 2)
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "a third tenant")
        second = git(repo, "rev-parse", "HEAD")
        git(repo, "worktree", "add", "-q", "--detach", str(root / ".worktrees" / second), second)
        flip(link, root / ".worktrees" / second)
        await until(lambda: cp.last is not None and cp.last.revision is not None and cp.last.revision.id == second,
                    "the new commit")
        assert cp.last is not None and cp.last.ok, cp.last and cp.last.error
        assert "tenant/t00002" in routes(cp)
        assert cp.status()["config_source"]["serving"]["id"] == second  # type: ignore[index]
        stop.set()
        await asyncio.wait_for(watcher, 5)

    asyncio.run(scenario())


def test_thousand_tenants_load_from_a_bundle(bucket: str, tmp_path: Path) -> None:
    """The fleet-scale path at a test's size (bench/cluster_config.py runs 10,000)."""
    config = synth.write_config(tmp_path / "config", 1000)
    version = publish(config, bucket)
    source = S3Source(f"s3://{bucket}/fairshare/config.tar.gz", tmp_path / "cs", 60)
    cp = ControlPlane(source.config_dir, None, JWKS, SnapshotStore(), config_source=source)
    outcome = cp.reload()
    assert outcome.ok, outcome.error
    assert outcome.revision is not None and outcome.revision.id == version
    assert cp.config is not None and len(cp.config.tenants) == 1000
