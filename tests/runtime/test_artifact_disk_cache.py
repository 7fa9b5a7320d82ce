"""The artefact store's disk cache is bounded: past its byte budget the least recently used verified copies
go (never one being read or handed out), 0 keeps none, staging folders a dead process left are swept, and a
load whose copy was removed downloads and verifies again. Real files and a real moto_server S3."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.__main__ import parse_settings
from inference_images.runtime.models.artifacts import ArtifactError, ArtifactRef, ArtifactStore
from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.own import OwnModelLoader, OwnModelRef
from tests.runtime import onnx_graphs
from tests.runtime.test_model_store import S3, s3  # noqa: F401  (the moto fixture)

SIZE = 1000
# Two copies (content plus a marker of ~70 bytes each) fit, three do not.
TWO_COPIES = 2600


def _put(s3: S3, name: str) -> ArtifactRef:  # noqa: F811
    data = name.encode() * (SIZE // len(name)) + b"." * (SIZE % len(name))
    return ArtifactRef(s3.put(f"disk-cache/{name}.onnx", data), hashlib.sha256(data).hexdigest())


def _download_and_keep(store: ArtifactStore, ref: ArtifactRef) -> None:
    verified = store.fetch_bytes(ref)
    assert verified is not None and not verified.on_disk
    store.keep(verified)
    store.flush()


def _copies(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if not p.name.startswith(".")} if cache.exists() else set()


def test_over_budget_removes_the_least_recently_used_copy_and_logs_its_digest_prefix(
    s3: S3, tmp_path: Path, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    a, b, c = (_put(s3, n) for n in ("lru-a", "lru-b", "lru-c"))
    store = ArtifactStore(tmp_path / "cache", budget_bytes=TWO_COPIES)
    _download_and_keep(store, a)
    _download_and_keep(store, b)
    assert _copies(tmp_path / "cache") == {a.sha256, b.sha256}
    with caplog.at_level(logging.INFO, logger="inference_images.runtime.models.artifacts"):
        _download_and_keep(store, c)
    assert _copies(tmp_path / "cache") == {b.sha256, c.sha256}
    assert store.used_bytes <= TWO_COPIES
    (line,) = [r for r in caplog.records if "removed from the disk cache" in r.getMessage()]
    assert line.__dict__["digests"] == [a.sha256[:12]] and line.__dict__["count"] == 1
    assert "lru-a" not in str(line.__dict__)  # the digest prefix only: no tenant's path


def test_a_recently_hit_copy_survives_and_the_order_survives_a_restart(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    a, b, c = (_put(s3, n) for n in ("hit-a", "hit-b", "hit-c"))
    cache = tmp_path / "cache"
    store = ArtifactStore(cache, budget_bytes=TWO_COPIES)
    _download_and_keep(store, a)
    _download_and_keep(store, b)
    hit = store.fetch_bytes(a)
    assert hit is not None and hit.on_disk  # served from the copy, which the hit marks used
    _download_and_keep(store, c)
    assert _copies(cache) == {a.sha256, c.sha256}
    # A new process learns the order from the mtimes the hits left: c last used long ago, a just now.
    os.utime(cache / c.sha256, (time.time() - 3600, time.time() - 3600))
    assert ArtifactStore(cache, budget_bytes=SIZE + 200).fetch_bytes(a) is not None
    assert _copies(cache) == {a.sha256}


def test_budget_zero_keeps_no_copy_and_removes_those_a_previous_process_kept(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    a, b = _put(s3, "zero-a"), _put(s3, "zero-b")
    cache = tmp_path / "cache"
    _download_and_keep(ArtifactStore(cache), a)
    assert _copies(cache) == {a.sha256}
    store = ArtifactStore(cache, budget_bytes=0)
    assert _copies(cache) == set()
    _download_and_keep(store, b)
    assert _copies(cache) == set() and store.used_bytes == 0


def test_a_copy_being_read_or_handed_out_by_fetch_is_never_removed(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    a, b, c = (_put(s3, n) for n in ("pin-a", "pin-b", "pin-c"))
    cache = tmp_path / "cache"
    store = ArtifactStore(cache, budget_bytes=SIZE + 200)
    path = store.fetch(a)  # a path its caller reads whenever it likes
    _download_and_keep(store, b)
    assert path.read_bytes() and _copies(cache) == {a.sha256}
    other = ArtifactStore(tmp_path / "other", budget_bytes=SIZE + 200)
    _download_and_keep(other, b)
    with other._reading_copy(b):  # what a cache hit holds while it reads the copy
        _download_and_keep(other, c)
        assert _copies(tmp_path / "other") == {b.sha256}
    _download_and_keep(other, c)
    assert _copies(tmp_path / "other") == {c.sha256}


def test_stale_staging_folders_are_swept_at_creation_but_not_a_live_or_fresh_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = time.time() - 3600
    stale, live, fresh = (cache / f".{n * 12}-x" for n in ("a", "b", "c"))
    for folder in (stale, live, fresh):
        (folder / "content").mkdir(parents=True)
        (folder / "content" / "model.onnx").write_bytes(b"half written")
    for folder in (stale, live):
        os.utime(folder, (old, old))
    (cache / ".keep").mkdir()  # not a staging folder's name: left alone
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a live writer in another process holds its staging folder
        ArtifactStore(cache)
        assert not stale.exists() and live.exists() and fresh.exists() and (cache / ".keep").exists()
    finally:
        os.close(fd)
    ArtifactStore(cache)  # its writer gone, the lock goes with it
    assert not live.exists() and fresh.exists()


def test_a_load_after_its_copy_was_removed_downloads_and_verifies_again(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    path, sha = onnx_graphs.linear(tmp_path / "src" / "m.onnx", n_in=4, n_out=3, seed=5)
    key = "disk-cache/acme/router/1/model.onnx"
    uri = s3.put(key, path.read_bytes())
    store = ArtifactStore(tmp_path / "cache", budget_bytes=max(path.stat().st_size, SIZE) + 200)
    loader = OwnModelLoader(store)
    ref = OwnModelRef.parse(owner="acme", name="router", version="1", format="onnx", artifact=uri, sha256=sha)
    loader(ref)
    store.flush()
    assert _copies(tmp_path / "cache") == {sha}
    _download_and_keep(store, _put(s3, "evicts-the-model"))
    assert sha not in _copies(tmp_path / "cache")
    x = np.ones((1, 4), dtype=np.float32)
    expected = onnx_graphs.run(path, {"x": x})
    loaded = loader(ref)
    outputs = {t.name: np.array(t.data).reshape(t.shape)
               for t in loaded.model.predict({"x": Tensor("x", "FP32", (1, 4), x.ravel().tolist())})}
    for name, want in expected.items():
        np.testing.assert_array_equal(outputs[name].astype(want.dtype), want)
    # The re-download is checked like the first: bytes changed behind the reference are refused.
    store.flush()
    _download_and_keep(store, _put(s3, "evicts-it-again"))
    s3.put(key, b"tampered")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        loader(ref)


def test_artifact_cache_mb_flag() -> None:
    settings, _ = parse_settings(["--region", "r", "--pool", "p"])
    assert settings.artifact_cache_mb == 4096
    settings, _ = parse_settings(["--region", "r", "--pool", "p", "--artifact-cache-mb", "0"])
    assert settings.artifact_cache_mb == 0
    with pytest.raises(SystemExit):
        parse_settings(["--region", "r", "--pool", "p", "--artifact-cache-mb", "-1"])
    with pytest.raises(ValueError, match="budget must be >= 0"):
        ArtifactStore(Path("/nonexistent"), budget_bytes=-1)


def test_purge_removes_a_tenants_copies_now_but_never_one_being_read(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    """Offboarding: the verified copies of a tenant's artefacts leave the replica's disk at once, not when the
    cache next needs room; a copy being read is reported busy (asked again once the model is unloaded)."""
    a, b, keep = (_put(s3, n) for n in ("gone-a", "gone-b", "stays"))
    cache = tmp_path / "cache"
    store = ArtifactStore(cache, budget_bytes=10 * SIZE)
    for ref in (a, b, keep):
        _download_and_keep(store, ref)
    before = store.used_bytes
    with store._reading_copy(b):
        out = store.purge([a.sha256, b.sha256, "0" * 64])
    assert out == {"purged": [a.sha256], "absent": ["0" * 64], "busy": [b.sha256]}
    assert _copies(cache) == {b.sha256, keep.sha256} and store.used_bytes < before
    assert store.purge([b.sha256])["purged"] == [b.sha256]
    assert _copies(cache) == {keep.sha256}
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # nothing left behind renamed
    # A purged artefact loads again from S3, verified, as any miss does.
    assert store.fetch_bytes(a) is not None


def test_a_digest_is_no_credential_a_copy_serves_only_the_sources_it_was_verified_from(
    s3: S3, tmp_path: Path  # noqa: F811
) -> None:
    """acme's model cached on a replica; hooli names acme's digest under its own prefix, where no object
    holds those bytes: it must be asked of S3 (and refused), not handed acme's copy."""
    acme = _put(s3, "tenants/acme/router/1/model")
    store = ArtifactStore(tmp_path / "cache")
    _download_and_keep(store, acme)
    assert _copies(tmp_path / "cache") == {acme.sha256}
    hooli = ArtifactRef(f"s3://{s3.bucket}/disk-cache/tenants/hooli/x.onnx", acme.sha256)
    for fetch in (store.fetch_bytes, store.fetch):
        with pytest.raises(ArtifactError, match=r"tenants/hooli/x\.onnx"):
            fetch(hooli)
    # hooli's pipeline writes the same bytes under its own prefix: verified from there, then served from
    # the one copy, for both sources.
    data = (tmp_path / "cache" / acme.sha256 / acme.name).read_bytes()
    shared = ArtifactRef(s3.put("disk-cache/tenants/hooli/router.onnx", data), acme.sha256)
    verified = store.fetch_bytes(shared)
    assert verified is not None and not verified.on_disk and verified.data == data  # downloaded and checked
    store.keep(verified)
    store.flush()
    assert _copies(tmp_path / "cache") == {acme.sha256}
    for ref in (acme, shared):
        again = store.fetch_bytes(ref)
        assert again is not None and again.on_disk and again.data == data
    assert store.fetch(shared).read_bytes() == data
