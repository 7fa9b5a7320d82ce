"""OPA bundles (`fairshare policy bundle`): what a real OPA loads, and publishing to S3 (a real moto server)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from opa_bindings import OpaEngine

from xds_server.cli import main
from xds_server.config import load_config
from xds_server.local.aws import moto_server
from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.policy.bundle import Bundle, BundleError, build_bundle, parse_s3_url, publish_bundle, read_bundle
from xds_server.policy.embedded import EmbeddedEngine
from xds_server.policy.engine import DECISIONS
from xds_server.policy.resolve import platform_document, tenant_document
from xds_server.policy.sources import PolicySources

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def platform_and_tenants() -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = load_config(CONFIG, policy_dir=DEFAULT_POLICY_DIR)
    platform = platform_document(cfg.tiers, cfg.regions, cfg.models)
    return platform, {tid: tenant_document(t.spec) for tid, t in cfg.tenants.items()}


@pytest.fixture(scope="module")
def bundle(platform_and_tenants: tuple[dict[str, Any], dict[str, Any]]) -> Bundle:
    return build_bundle(PolicySources.load(DEFAULT_POLICY_DIR), platform_and_tenants[0])


def opa_decision(archive: bytes, tenants: dict[str, Any]) -> Any:
    """Load a bundle's modules and data into OPA's own engine, the way an OPA activates it, and ask."""
    contents = read_bundle(archive)
    opa = OpaEngine()
    try:
        for path, text in contents.modules.items():
            opa.add_policy(path, text)
        opa.add_data(contents.data)
        return opa.eval_document(DECISIONS.replace("/", "."), input={"tenants": tenants})
    finally:
        opa.close()


def test_bundle_layout(bundle: Bundle, platform_and_tenants: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sources = PolicySources.load(DEFAULT_POLICY_DIR)
    with tarfile.open(fileobj=io.BytesIO(bundle.archive), mode="r:gz") as tar:
        names = sorted(tar.getnames())
    assert names == sorted(["/.manifest", "/data.json", *(f"/{m}" for m in sources.modules)])
    assert not any(n.endswith("_test.rego") for n in names)
    contents = read_bundle(bundle.archive)
    assert contents.manifest["roots"] == ["fairshare"]
    assert contents.manifest["rego_version"] == 1
    assert contents.manifest["revision"] == bundle.revision
    assert bundle.revision.startswith(sources.revision + "-")
    assert contents.data == {"fairshare": {"platform": platform_and_tenants[0]}}
    assert contents.modules == dict(sources.modules)


def test_bundle_is_reproducible_and_revisioned_by_content(
    bundle: Bundle, platform_and_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    sources = PolicySources.load(DEFAULT_POLICY_DIR)
    platform = platform_and_tenants[0]
    assert build_bundle(sources, platform).archive == bundle.archive
    bigger = json.loads(json.dumps(platform))
    next(iter(bigger["regions"].values()))["pools"][0]["replicas"] += 1
    changed = build_bundle(sources, bigger)
    assert changed.revision != bundle.revision
    assert changed.revision.split("-")[0] == bundle.revision.split("-")[0]  # same policies


def test_real_opa_decides_from_the_bundle_like_the_embedded_engine(
    bundle: Bundle, platform_and_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    platform, tenants = platform_and_tenants
    # The example config, and one that every concern denies something of.
    denied = {
        **tenants,
        "greedy": {**tenants["acme"], "weight": 9, "quotas": {"concurrency": 10_000, "gpus": 0}},
        "leaky": {
            **tenants["initech"],
            "regions": {"home": "ap-south-1", "allowed": ["eu-west-1"]},
            "quotas": {"gpus": 0},
        },
        "secret": {**tenants["hooli"], "data_class": "secret"},
    }
    embedded = EmbeddedEngine()
    try:
        embedded.load(PolicySources.load(DEFAULT_POLICY_DIR), platform)
        for case in (tenants, denied):
            assert opa_decision(bundle.archive, case) == embedded.query(DECISIONS, {"tenants": case})
    finally:
        embedded.close()
    clean = opa_decision(bundle.archive, tenants)
    assert set(clean["decisions"]) == {"acme", "globex", "hooli", "initech"}
    assert clean["decisions"]["acme"]["weight"] == 4
    assert clean["violations"] == []
    assert {(v["subject"], v["rule"]) for v in opa_decision(bundle.archive, denied)["violations"]} == {
        ("greedy", "weight-above-tier"),
        ("leaky", "home-outside-allowed-regions"),
        ("secret", "unknown-data-class"),
    }


def test_bundle_outside_its_roots_is_refused() -> None:
    def archive(files: dict[str, str]) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, text in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
        return gzip.compress(raw.getvalue())

    manifest = json.dumps({"revision": "r", "roots": ["fairshare"]})
    with pytest.raises(BundleError, match=r"/other/x\.rego: package other is outside the bundle's roots"):
        read_bundle(archive({"/.manifest": manifest, "/other/x.rego": "package other\n"}))
    with pytest.raises(BundleError, match=r"/data\.json: data\.elsewhere is outside"):
        read_bundle(archive({"/.manifest": manifest, "/data.json": '{"elsewhere": 1}'}))
    with pytest.raises(BundleError, match=r"no /\.manifest"):
        read_bundle(archive({"/data.json": "{}"}))
    with pytest.raises(BundleError, match="not a gzipped tar bundle"):
        read_bundle(b"not a bundle")


def test_s3_url_must_name_an_object() -> None:
    assert parse_s3_url("s3://bucket/fairshare/bundle.tar.gz") == ("bucket", "fairshare/bundle.tar.gz")
    for bad in ("http://bucket/key", "s3://bucket", "s3://bucket/dir/", "s3:///key"):
        with pytest.raises(BundleError, match="is not an S3 object URL"):
            parse_s3_url(bad)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto S3 server on a free port; yields its endpoint URL."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {
        "AWS_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("FAIRSHARE_POLICY_DIR", str(DEFAULT_POLICY_DIR))  # main() points it at --policy
    return s3


def test_cli_publishes_a_loadable_bundle_to_s3(
    s3_env: str,
    tmp_path: Path,
    platform_and_tenants: tuple[dict[str, Any], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = boto3.client("s3")
    client.create_bucket(Bucket="policies")
    out = tmp_path / "bundle.tar.gz"
    url = "s3://policies/fairshare/bundle.tar.gz"
    argv = ["policy", "bundle", "--config", str(CONFIG), "--policy", str(DEFAULT_POLICY_DIR), "-o", str(out)]
    assert main([*argv, "--publish", url]) == 0
    assert f"published to {url}" in capsys.readouterr().out

    obj = client.get_object(Bucket="policies", Key="fairshare/bundle.tar.gz")
    downloaded = obj["Body"].read()
    assert downloaded == out.read_bytes()
    assert obj["ContentType"] == "application/gzip"
    assert obj["Metadata"]["revision"] == read_bundle(downloaded).manifest["revision"]
    decision = opa_decision(downloaded, platform_and_tenants[1])
    assert set(decision["decisions"]) == {"acme", "globex", "hooli", "initech"}


def test_publish_to_a_missing_bucket_names_it(
    s3_env: str, bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(BundleError, match=r"cannot publish to s3://no-such-bucket/b\.tar\.gz: NoSuchBucket"):
        publish_bundle(bundle, "s3://no-such-bucket/b.tar.gz")
    argv = [
        "policy",
        "bundle",
        "--config",
        str(CONFIG),
        "-o",
        str(tmp_path / "b.tar.gz"),
        "--publish",
        "s3://no-such-bucket/b.tar.gz",
    ]
    assert main(argv) == 2
    assert "NoSuchBucket" in capsys.readouterr().err
