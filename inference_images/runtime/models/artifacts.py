"""Model artefacts: fetched from a local path or S3, verified against a sha256 before anything reads them.

A reference is ``URI#sha256=HEX`` where URI is ``s3://bucket/key``, ``file:///abs/path`` or a plain path.
What gets verified:

- a file (weights, a JSON lexicon, or an archive ``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``): the sha256 of
  its bytes, as ``sha256sum`` prints it;
- a local directory: the sha256 of its manifest, one ``<sha256 of file>  <relative path>`` line per file in
  byte order of the paths; ``python -m inference_images.runtime.models.artifacts digest PATH`` prints it
  for either kind.

Verified content lands in a content-addressed cache (``<cache>/<sha256>/``), copied there while it is
hashed, so the bytes a model loads are the bytes that were checked; an archive is unpacked there after its
check (no absolute paths, no ``..``, no links or devices). A later fetch of the same checksum from a source
the copy was verified from is served from the cache. From any other source it is fetched and verified
first, then that source is added to the copy's (one copy of the bytes still): a digest is no credential,
and one tenant naming another's digest under its own prefix would otherwise be handed the other's model
without S3 ever being asked whether its object holds those bytes.

``fetch_bytes`` is the in-memory way for a single-file artefact (a tenant's ONNX graph): the verified bytes
themselves, which a format that builds from bytes (onnxruntime) uses without reading a copy back from disk.
From S3 it is one GET streamed through the hash (no HEAD, no transfer threads: for objects of a few KB
those cost more than the transfer: 11 ms against 4 ms for 20 KB from moto). ``keep`` then writes the
verified copy to the cache for later fetches on a background writer, which the caller starts once its own
use of the bytes is done (a 20 MB write measured 10-75 ms here once the kernel throttles dirty pages: not
something a load should wait for). A local file is read once while hashed and not copied at all: the
bytes in memory are the bytes that were checked.

The cache is bounded (``budget_bytes``, the runtime's ``--artifact-cache-mb``): after each write the least
recently used copies (by their directory's mtime, touched on each hit, so the order survives a restart) are
removed until the copies this store knows of fit; 0 keeps none. A copy is never removed while this process
reads it; a reader in another process that loses the race finds nothing and downloads again, verified as
always. Copies whose path ``fetch`` handed out stay while the store lives (their caller reads them when it
likes: a catalog model's weights). A new store removes the staging folders a dead process left mid-write.

S3 goes through boto3, which honours ``AWS_ENDPOINT_URL`` (moto in tests, MinIO or a VPC endpoint
elsewhere) and the usual credential chain; a reason never carries a secret.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Re-exported: callers of this module's verification find the digest's definition here too.
from inference_images.runtime.digests import ArtifactError, file_digest, tree_digest

CACHE_ENV = "FAIRSHARE_ARTIFACT_CACHE"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# What _staging creates (and _enforce_budget renames a removed copy to): ".<sha12>-<suffix>".
_STAGING_RE = re.compile(r"^\.[0-9a-f]{12}-")
_S3_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$")
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
_CHUNK = 1 << 20
_MARKER = ".verified.json"
# Verified copies waiting for the background writer beyond this many bytes are not written: the copy only
# spares a later download, and memory held for it must stay bounded under a flood of cold loads.
_MAX_PENDING_WRITE_BYTES = 256 << 20
# The disk cache's default byte budget (the runtime's --artifact-cache-mb): ~150 of the largest own models.
DEFAULT_DISK_BUDGET_MB = 4096
# A staging folder younger than this is never swept, even unlocked: it may be between its creation and its
# writer's lock.
_STAGING_GRACE_S = 60.0
# How many digest prefixes one eviction log line names; the count and bytes cover the rest.
_LOGGED_DIGESTS = 20
# The nice value of the threads that load models and write artefact copies (background_priority).
BACKGROUND_NICE = 10

log = logging.getLogger(__name__)


class ChecksumMismatchError(ArtifactError):
    """The artefact's bytes do not hash to the sha256 its reference names; the message has both digests."""


class SizeMismatchError(ArtifactError):
    """The artefact is not the size its owner declared (found before its bytes are read)."""


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    uri: str
    sha256: str
    # What its owner declared of its size (an own model's tenant file): an artifact of another size is
    # refused before it is read, so nobody's 5 GB file lands in a replica's memory under a 1 MB claim.
    size: int | None = None

    @classmethod
    def parse(cls, text: str) -> ArtifactRef:
        uri, sep, fragment = text.partition("#")
        if not sep or not fragment.startswith("sha256="):
            raise ValueError(f"artifact {text!r} must end in #sha256=<64 hex digits> (the checksum is required)")
        digest = fragment.removeprefix("sha256=").lower()
        if not _SHA256_RE.match(digest):
            raise ValueError(f"artifact {uri!r}: sha256 must be 64 hex digits, got {len(digest)} characters")
        if not uri:
            raise ValueError(f"artifact {text!r} has no location before '#'")
        if uri.startswith("s3://") and not _S3_RE.match(uri):
            raise ValueError(f"artifact {uri!r}: expected s3://bucket/key")
        if "://" in uri and not uri.startswith(("s3://", "file://")):
            raise ValueError(f"artifact {uri!r}: only s3:// and local paths (or file://) are supported")
        return cls(uri, digest)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.uri}#sha256={self.sha256}"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "fairshare-artifacts")


@dataclass(frozen=True, slots=True)
class Verified:
    """An artefact's bytes that matched its sha256 (``ArtifactStore.fetch_bytes``)."""

    ref: ArtifactRef
    data: bytes
    # Already in the cache or a local file: nothing for ``keep`` to write.
    on_disk: bool


class ArtifactStore:
    """Fetches and verifies artefacts into a content-addressed cache directory."""

    def __init__(self, cache_dir: Path | None = None, budget_bytes: int = DEFAULT_DISK_BUDGET_MB << 20) -> None:
        if budget_bytes < 0:
            raise ValueError(f"artifact cache budget must be >= 0 bytes, got {budget_bytes}")
        self.cache_dir = cache_dir or default_cache_dir()
        self.budget_bytes = budget_bytes
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[concurrent.futures.Future[None]] = []
        self._writer_lock = threading.Lock()
        self._pending_write_bytes = 0
        # The copies on disk this store knows of, least recently used first, with their sizes; the digests
        # being read now (count of readers), and those whose path ``fetch`` handed out (never removed).
        self._disk_lock = threading.Lock()
        self._copies: OrderedDict[str, int] = OrderedDict()
        self._used_bytes = 0
        self._reading: dict[str, int] = {}
        self._handed_out: set[str] = set()
        self._sweep_staging()
        self._index_copies()
        self._enforce_budget()

    @property
    def used_bytes(self) -> int:
        """Bytes of the verified copies this store knows of on disk."""
        with self._disk_lock:
            return self._used_bytes

    def fetch_bytes(self, ref: ArtifactRef) -> Verified | None:
        """The verified content of a single-file artefact, in memory; None for an archive or a directory
        (their content is a tree on disk: ``fetch`` it). Raises ArtifactError like ``fetch``."""
        if ref.name.lower().endswith(_ARCHIVES):
            return None
        with self._reading_copy(ref):
            cached = self._cached(ref)
            if cached is not None:
                if cached.is_dir():
                    return None
                try:
                    data = cached.read_bytes()
                except OSError:  # removed by another process sharing the directory: download it again
                    data = None
                if data is not None:
                    self._touch(ref)
                    return Verified(ref, data, on_disk=True)
        if ref.is_s3:
            data, got = self._get(ref)
        else:
            source = _local_path(ref.uri)
            if source.is_dir():
                return None
            if not source.is_file():
                raise ArtifactError(f"{ref.uri}: no such file or directory")
            _check_size(ref, source.stat().st_size)
            data, got = _read_hashing(source)
        if got != ref.sha256:
            raise ChecksumMismatchError(f"{ref.uri}: checksum mismatch: expected sha256 {ref.sha256}, got {got}")
        # A local file needs no copy: reading it again is as cheap as reading a copy.
        return Verified(ref, data, on_disk=not ref.is_s3)

    def keep(self, verified: Verified) -> None:
        """Write a downloaded artefact's verified copy to the cache, in the background, so a later fetch of
        the same checksum needs no download. Skipped when already on disk, or when the writes waiting
        already hold too many bytes (the copy only saves a later download)."""
        # A copy over the whole budget would be removed as soon as written.
        if verified.on_disk or len(verified.data) > self.budget_bytes:
            return
        ref, data = verified.ref, verified.data
        with self._writer_lock:
            if self._pending_write_bytes + len(data) > _MAX_PENDING_WRITE_BYTES:
                return
            self._pending_write_bytes += len(data)
            if self._writer is None:
                self._writer = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="artifact-writer", initializer=background_priority
                )
            self._writes = [w for w in self._writes if not w.done()]
            self._writes.append(self._writer.submit(self._write_copy, ref, data))

    def flush(self) -> None:
        """Wait for the copies ``keep`` queued so far to be written (tests, the benchmark)."""
        with self._writer_lock:
            writes, self._writes = self._writes, []
        concurrent.futures.wait(writes)

    def purge(self, digests: list[str]) -> dict[str, list[str]]:
        """Remove the verified copies of these sha256 digests now (a tenant offboarded: its bytes must not
        stay on the replica's disk until the cache needs room). Pending background writes are waited for
        first, so none lands after the purge. A copy being read or handed out is left and reported `busy`:
        the caller asks again once the model is unloaded."""
        self.flush()
        out: dict[str, list[str]] = {"purged": [], "absent": [], "busy": []}
        trash: list[Path] = []
        with self._disk_lock:
            for sha in sorted(set(digests)):
                if sha in self._reading or sha in self._handed_out:
                    out["busy"].append(sha)
                    continue
                target = self.cache_dir / sha
                moved = self.cache_dir / f".{sha[:12]}-purged-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    target.rename(moved)
                except FileNotFoundError:
                    out["absent"].append(sha)
                    self._used_bytes -= self._copies.pop(sha, 0)
                    continue
                self._used_bytes -= self._copies.pop(sha, 0)
                trash.append(moved)
                out["purged"].append(sha)
        for moved in trash:
            shutil.rmtree(moved, ignore_errors=True)
        if out["purged"]:
            log.info("artefact copies purged", extra={"digests": [d[:12] for d in out["purged"]]})
        return out

    def _write_copy(self, ref: ArtifactRef, data: bytes) -> None:
        try:
            if self._cached(ref) is None and self._cached(ref, any_source=True) is not None:
                self._add_source(ref)  # the bytes are there, verified from another source: no second copy
            elif self._cached(ref) is None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                with self._staging(ref) as staging:
                    content = staging / "content"
                    content.mkdir()
                    (content / ref.name).write_bytes(data)
                    (content / _MARKER).write_text(json.dumps({"sources": [_source(ref)], "path": ref.name}))
                    self._publish(ref, content)
            self._enforce_budget()
        except (OSError, ValueError, ArtifactError) as exc:  # only a later download's saving is lost
            log.warning("verified artefact copy not written", extra={"artifact": ref.uri, "reason": str(exc)})
        finally:
            with self._writer_lock:
                self._pending_write_bytes -= len(data)

    def fetch(self, ref: ArtifactRef) -> Path:
        """The verified local path: a file, or a directory for an archive or a directory artefact."""
        with self._disk_lock:
            # Before the lookup, so the budget never removes it between the lookup and the caller's read.
            self._handed_out.add(ref.sha256)
        cached = self._cached(ref)
        if cached is not None:
            self._touch(ref)
            return cached
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._staging(ref) as staging:
            content = staging / "content"
            content.mkdir()
            if ref.is_s3:
                got = self._download(ref, content / ref.name)
                kind = "file"
            else:
                source = _local_path(ref.uri)
                if source.is_dir():
                    shutil.copytree(source, content / "tree", symlinks=True)
                    got, kind = tree_digest(content / "tree"), "tree"
                elif source.is_file():
                    _check_size(ref, source.stat().st_size)  # as fetch_bytes does: an archive is fetched here
                    got, kind = _copy_hashing(source, content / source.name), "file"
                else:
                    raise ArtifactError(f"{ref.uri}: no such file or directory")
            if got != ref.sha256:
                raise ChecksumMismatchError(f"{ref.uri}: checksum mismatch: expected sha256 {ref.sha256}, got {got}")
            relative = self._unpack(ref, content, kind)
            (content / _MARKER).write_text(json.dumps({"sources": [_source(ref)], "path": relative}))
            path = self._publish(ref, content)
        self._enforce_budget()
        return path

    def _cached(self, ref: ArtifactRef, any_source: bool = False) -> Path | None:
        """The verified copy of `ref`'s digest, if it was verified from `ref`'s source (`any_source`: from
        any: the bytes are the same, for a caller that has just verified them itself)."""
        final = self.cache_dir / ref.sha256
        try:
            marker = json.loads((final / _MARKER).read_text())
            relative = marker["path"]
            sources = marker.get("sources") or [marker["source"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not any_source and _source(ref) not in sources:
            return None
        path = final / relative
        return path if path.exists() else None

    def _add_source(self, ref: ArtifactRef) -> None:
        """Record that `ref`'s source was just verified to hold the copy's bytes. Replaced in one rename; two
        writers at once may lose one's source, which costs only a later download."""
        marker_path = self.cache_dir / ref.sha256 / _MARKER
        marker = json.loads(marker_path.read_text())
        sources = marker.pop("source", None)
        marker["sources"] = sorted({*(marker.get("sources") or [sources]), _source(ref)} - {None})
        staged = marker_path.with_name(f"{_MARKER}.{os.getpid()}-{time.monotonic_ns()}")
        staged.write_text(json.dumps(marker))
        staged.replace(marker_path)

    def _publish(self, ref: ArtifactRef, content: Path) -> Path:
        """Put `content`, just verified from `ref`'s source, in the cache (or, where the digest is already
        there, add the source to that copy's)."""
        final = self.cache_dir / ref.sha256
        try:
            content.rename(final)
        except OSError:
            # Published before (another source, or another process first): the same bytes, use those.
            if self._cached(ref, any_source=True) is None:
                raise ArtifactError(f"{ref.uri}: cannot write the verified copy to {final}") from None
            try:
                self._add_source(ref)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise ArtifactError(f"{ref.uri}: cannot record the verified copy's source in {final}") from None
        cached = self._cached(ref)
        assert cached is not None
        self._remember(ref.sha256, final)
        return cached

    # The disk budget. Only the writer thread and loads that publish a copy call _enforce_budget; readers
    # only pin (``_reading_copy``) and touch.

    @contextlib.contextmanager
    def _staging(self, ref: ArtifactRef) -> Iterator[Path]:
        """A fresh staging folder, locked (flock) while this process fills it, removed afterwards: a new store
        sweeps only the staging folders nobody holds, i.e. those a dead process left."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{ref.sha256[:12]}-", dir=self.cache_dir))
        fd = os.open(staging, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(fd)

    def _sweep_staging(self) -> None:
        """Remove staging folders (``.<sha12>-*``) older than the grace that no live process holds locked."""
        try:
            entries = list(os.scandir(self.cache_dir))
        except OSError:
            return
        swept = 0
        now = time.time()
        for entry in entries:
            if not _STAGING_RE.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < _STAGING_GRACE_S:
                    continue
                fd = os.open(entry.path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer holds it
                os.close(fd)
                continue
            try:
                shutil.rmtree(entry.path, ignore_errors=True)
                swept += 1
            finally:
                os.close(fd)
        if swept:
            log.info("stale artefact staging folders removed", extra={"count": swept, "cache": str(self.cache_dir)})

    def _index_copies(self) -> None:
        """Learn the copies already on disk (a previous process's), oldest use first."""
        try:
            entries = [e for e in os.scandir(self.cache_dir) if _SHA256_RE.match(e.name) and e.is_dir()]
        except OSError:
            return
        found = []
        for entry in entries:
            try:
                found.append((entry.stat().st_mtime, entry.name, _tree_bytes(Path(entry.path))))
            except OSError:
                continue
        with self._disk_lock:
            for _, sha, size in sorted(found):
                if sha not in self._copies:
                    self._copies[sha] = size
                    self._used_bytes += size

    def _remember(self, sha: str, final: Path) -> None:
        try:
            size = _tree_bytes(final)
        except OSError:
            return
        with self._disk_lock:
            self._used_bytes += size - self._copies.pop(sha, 0)
            self._copies[sha] = size

    @contextlib.contextmanager
    def _reading_copy(self, ref: ArtifactRef) -> Iterator[None]:
        with self._disk_lock:
            self._reading[ref.sha256] = self._reading.get(ref.sha256, 0) + 1
        try:
            yield
        finally:
            with self._disk_lock:
                left = self._reading.pop(ref.sha256) - 1
                if left:
                    self._reading[ref.sha256] = left

    def _touch(self, ref: ArtifactRef) -> None:
        """Mark a copy just used: last in the eviction order, and its mtime now (the order after a restart)."""
        with self._disk_lock:
            if ref.sha256 in self._copies:
                self._copies.move_to_end(ref.sha256)
        with contextlib.suppress(OSError):
            os.utime(self.cache_dir / ref.sha256)

    def _enforce_budget(self) -> None:
        """Remove least recently used copies, never one being read or handed out, until within the budget."""
        removed: list[tuple[str, Path, int]] = []
        with self._disk_lock:
            if self._used_bytes <= self.budget_bytes:
                return
            for sha in list(self._copies):
                if self._used_bytes <= self.budget_bytes:
                    break
                if sha in self._reading or sha in self._handed_out:
                    continue
                # Renamed away under the lock, so a lookup sees the whole copy or none of it.
                trash = self.cache_dir / f".{sha[:12]}-removed-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    (self.cache_dir / sha).rename(trash)
                except FileNotFoundError:  # another process removed it
                    trash = Path()
                except OSError as exc:
                    log.warning("artefact copy not removed", extra={"digest": sha[:12], "reason": str(exc)})
                    continue
                size = self._copies.pop(sha)
                self._used_bytes -= size
                removed.append((sha, trash, size))
            used = self._used_bytes
        for _, trash, _ in removed:
            if trash != Path():
                shutil.rmtree(trash, ignore_errors=True)
        if removed:
            log.info(
                "artefact copies removed from the disk cache (least recently used first)",
                extra={
                    "count": len(removed),
                    "digests": [sha[:12] for sha, _, _ in removed[:_LOGGED_DIGESTS]],
                    "freed_bytes": sum(size for _, _, size in removed),
                    "used_bytes": used,
                    "budget_bytes": self.budget_bytes,
                },
            )

    def _unpack(self, ref: ArtifactRef, content: Path, kind: str) -> str:
        if kind == "tree":
            return "tree"
        archive = content / (ref.name if ref.is_s3 else _local_path(ref.uri).name)
        lowered = archive.name.lower()
        if not lowered.endswith(_ARCHIVES):
            return archive.name
        target = content / "unpacked"
        target.mkdir()
        try:
            if lowered.endswith(".zip"):
                _unzip(archive, target)
            else:
                with tarfile.open(archive) as tar:
                    # "data" refuses absolute paths, "..", links leaving the target, devices.
                    tar.extractall(target, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
            raise ArtifactError(f"{ref.uri}: cannot unpack: {exc}") from None
        archive.unlink()
        return "unpacked"

    def _download(self, ref: ArtifactRef, dest: Path) -> str:
        bucket, key = _bucket_key(ref)
        client = _s3_client()
        if ref.size is not None:
            with _s3_errors(ref):
                _check_size(ref, int(client.head_object(Bucket=bucket, Key=key)["ContentLength"]))
        with _s3_errors(ref), dest.open("wb") as raw:
            hashing = _HashingWriter(raw)
            client.download_fileobj(bucket, key, hashing)
        return hashing.hexdigest()

    def _get(self, ref: ArtifactRef) -> tuple[bytes, str]:
        """One GET, streamed through the hash: (content, its sha256)."""
        bucket, key = _bucket_key(ref)
        client = _s3_client()
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        with _s3_errors(ref):
            response = client.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                _check_size(ref, int(response["ContentLength"]))
                for chunk in body.iter_chunks(_CHUNK):
                    digest.update(chunk)
                    chunks.append(chunk)
            finally:
                body.close()
        return b"".join(chunks), digest.hexdigest()


def _check_size(ref: ArtifactRef, actual: int) -> None:
    if ref.size is not None and actual != ref.size:
        raise SizeMismatchError(f"{ref.uri}: is {actual:,} bytes, not the {ref.size:,} its owner declared; not read")


def _bucket_key(ref: ArtifactRef) -> tuple[str, str]:
    match = _S3_RE.match(ref.uri)
    assert match is not None
    bucket, key = match.groups()
    return bucket, key


@contextlib.contextmanager
def _s3_errors(ref: ArtifactRef) -> Iterator[None]:
    """S3's and botocore's errors as ArtifactErrors naming the artefact (never a secret)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        if code in ("404", "NoSuchKey"):
            raise ArtifactError(f"{ref.uri}: no such object (NoSuchKey)") from None
        if code in ("NoSuchBucket",):
            raise ArtifactError(f"{ref.uri}: no such bucket") from None
        raise ArtifactError(f"{ref.uri}: S3 refused the download: {code} ({error.get('Message', '')})") from None
    except BotoCoreError as exc:
        # Connection and credential errors; their text names endpoints, never secrets.
        raise ArtifactError(f"{ref.uri}: {type(exc).__name__}: {exc}") from None


class _HashingWriter:
    """A write-only file object that hashes what passes through (boto3 writes chunks in order)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._raw.write(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


# What selects the client boto3's standard configuration builds (endpoint, region, profile, static keys):
# a client is reused while these stay the same, and a new one is built when they change.
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "AWS_ACCESS_KEY_ID", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
_clients: dict[tuple[str | None, ...], Any] = {}
_clients_lock = threading.Lock()


def _s3_client() -> Any:
    """One client per configuration, shared by the loader threads (boto3 clients are thread-safe): building
    one costs ~80 ms of botocore model loading, 20x the download of a 20 KB model (bench/models.py)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - boto3 is in both images' requirements
        raise ArtifactError("s3:// artefacts need boto3, which is not installed") from None
    key = tuple(os.environ.get(name) for name in _CLIENT_ENV)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Retries cover a brief S3 or network hiccup at start-up; the timeouts keep a dead endpoint
            # from holding the replica in "loading" forever.
            config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
            client = _clients[key] = boto3.session.Session().client("s3", config=config)
        return client


def background_priority() -> None:
    """Lower the calling thread's CPU priority to ``BACKGROUND_NICE``: the initializer of the threads that
    load models and write artefact copies, so that on a contended CPU the serving worker and the event
    loop win the cores (measured in bench/models.py's fairness part: a warm tenant's p99 beside a tenant
    cycling cold models). Linux only, where a thread has its own nice value; elsewhere (where
    PRIO_PROCESS with a thread id would name a process) it does nothing. Lowering needs no privilege."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), BACKGROUND_NICE))
    except OSError as exc:  # a sandbox refusing it: loads still run, at normal priority
        log.warning("could not lower a background thread's priority", extra={"reason": str(exc)})


def _tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (a copy's directory), links not followed."""
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _source(ref: ArtifactRef) -> str:
    """Where `ref`'s bytes come from, one spelling per place (`file:///m.onnx` and `/m.onnx` are one)."""
    return ref.uri if ref.is_s3 else str(_local_path(ref.uri))


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def _read_hashing(source: Path) -> tuple[bytes, str]:
    """The file's bytes, read once, and their sha256: what is hashed is what is used."""
    data = source.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _copy_hashing(source: Path, dest: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as src, dest.open("wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _unzip(archive: Path, target: Path) -> None:
    root = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if (mode & 0o170000) == 0o120000:
                raise ArtifactError(f"{archive.name}: {info.filename} is a symbolic link")
            dest = (target / info.filename).resolve()
            if dest != root and root not in dest.parents:
                raise ArtifactError(f"{archive.name}: {info.filename} would land outside the unpack directory")
        zf.extractall(target)


def digest(path: Path) -> str:
    """The checksum to put in a reference for this local file or directory."""
    return tree_digest(path) if path.is_dir() else file_digest(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference_images.runtime.models.artifacts")
    sub = parser.add_subparsers(dest="command", required=True)
    digest_cmd = sub.add_parser("digest", help="print the sha256 to reference a local file or directory by")
    digest_cmd.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if not args.path.exists():
        print(f"error: {args.path}: no such file or directory", file=sys.stderr)
        return 2
    with contextlib.suppress(BrokenPipeError):
        print(digest(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
