"""A tenant's single-file artefact fetched into memory (``ArtifactStore.fetch_bytes``): verified before use,
the session built from those bytes, the verified copy kept for later fetches off the load's path, and the
same reasons as the disk path when something is wrong. S3 is a real moto_server (``test_model_store``'s)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.models.artifacts import ArtifactError, ArtifactRef, ArtifactStore
from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.cache import ModelCache, ModelUnavailableError
from inference_images.runtime.models.own import OwnModelLoader, OwnModelRef
from tests.runtime import onnx_graphs
from tests.runtime.test_model_store import S3, s3  # noqa: F401  (the moto fixture)


def test_s3_bytes_are_verified_and_the_copy_kept_serves_later_fetches_without_s3(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    data = b"graph bytes " * 1000
    uri = s3.put("tenants/acme/m/1/model.onnx", data)
    ref = ArtifactRef(uri, hashlib.sha256(data).hexdigest())
    store = ArtifactStore(tmp_path / "cache")
    verified = store.fetch_bytes(ref)
    assert verified is not None and verified.data == data and not verified.on_disk
    # Nothing is on disk until the caller says it is done with the bytes; then it is written once.
    assert not (tmp_path / "cache" / ref.sha256).exists()
    store.keep(verified)
    store.flush()
    s3.client.delete_object(Bucket=s3.bucket, Key="tenants/acme/m/1/model.onnx")
    again = store.fetch_bytes(ref)
    assert again is not None and again.data == data and again.on_disk
    assert store.fetch(ref).read_bytes() == data  # the disk path reads the same verified copy


def test_s3_mismatch_and_missing_object_name_the_artefact_and_keep_nothing(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    uri = s3.put("tenants/acme/m/2/model.onnx", b"tampered")
    wrong = hashlib.sha256(b"what the tenant declared").hexdigest()
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(ArtifactError) as exc:
        store.fetch_bytes(ArtifactRef(uri, wrong))
    assert str(exc.value) == (
        f"{uri}: checksum mismatch: expected sha256 {wrong}, got {hashlib.sha256(b'tampered').hexdigest()}"
    )
    store.flush()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    with pytest.raises(ArtifactError, match=r"no such object \(NoSuchKey\)"):
        store.fetch_bytes(ArtifactRef("s3://models/tenants/acme/none.onnx", wrong))


def test_local_file_is_read_once_and_not_copied_archives_and_directories_go_to_disk(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(b"local graph")
    store = ArtifactStore(tmp_path / "cache")
    verified = store.fetch_bytes(ArtifactRef(str(source), hashlib.sha256(b"local graph").hexdigest()))
    assert verified is not None and verified.data == b"local graph" and verified.on_disk
    store.keep(verified)
    store.flush()
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        store.fetch_bytes(ArtifactRef(str(source), "0" * 64))
    with pytest.raises(ArtifactError, match="no such file or directory"):
        store.fetch_bytes(ArtifactRef(str(tmp_path / "missing.onnx"), "0" * 64))
    assert store.fetch_bytes(ArtifactRef("s3://models/a/model.tar.gz", "0" * 64)) is None
    assert store.fetch_bytes(ArtifactRef(str(tmp_path), "0" * 64)) is None


def test_own_model_from_s3_is_built_from_the_verified_bytes_and_reports_its_steps(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    path, sha = onnx_graphs.linear(tmp_path / "src" / "m.onnx", n_in=4, n_out=3, seed=3)
    uri = s3.put("tenants/acme/router/1/model.onnx", path.read_bytes())
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 5
    expected = onnx_graphs.run(path, {"x": x})
    store = ArtifactStore(tmp_path / "cache")
    loader = OwnModelLoader(store)
    ref = OwnModelRef.parse(owner="acme", name="router", version="1", format="onnx", artifact=uri, sha256=sha)
    loaded = loader(ref)
    assert set(loaded.steps) == {"fetch", "build"} and all(t > 0 for t in loaded.steps.values())
    outputs = {t.name: np.array(t.data).reshape(t.shape) for t in loaded.model.predict(
        {"x": Tensor("x", "FP32", (2, 4), x.ravel().tolist())})}
    for name, want in expected.items():
        np.testing.assert_array_equal(outputs[name].astype(want.dtype), want)
    assert loaded.footprint_bytes >= path.stat().st_size
    store.flush()
    assert (tmp_path / "cache" / sha).is_dir()  # kept for the next load of the same checksum

    async def bad() -> None:
        cache = ModelCache(OwnModelLoader(ArtifactStore(tmp_path / "other")), min_residency_s=0)
        wrong = OwnModelRef.parse(owner="acme", name="router", version="2", format="onnx", artifact=uri,
                                  sha256=hashlib.sha256(b"x").hexdigest())
        with pytest.raises(ModelUnavailableError) as exc:
            await cache.acquire(wrong)
        assert exc.value.reason == "model 'acme:router' version '2': its artifact failed its integrity check " \
            "(sha256 mismatch)"
        await cache.close()

    asyncio.run(bad())
