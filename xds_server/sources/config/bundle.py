"""The config bundle: the OPA bundle `make policy-bundle` builds (policies + platform data, see
xds_server/policy/bundle.py) with the whole tenant config under `/config/`, published to a versioned S3
object and unpacked by the control plane's S3 source.

What is checked before a revision is unpacked: the object's sha256 (S3 metadata `sha256`, written by
`fairshare config publish`) against its bytes, what OPA checks of a bundle (manifest, roots, packages),
and the manifest's digest of every file. A bundle signed for OPA (`/.signatures.json`) is refused: this
reader does not verify OPA signatures yet, and a signature that is not checked must not look checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

from xds_server.config import load_config
from xds_server.policy.bundle import (
    CONFIG_PREFIX,
    CONTENT_TYPE,
    MANIFEST,
    ROOT,
    Bundle,
    BundleError,
    build_bundle,
    content_digest,
    read_bundle,
)
from xds_server.policy.resolve import platform_document
from xds_server.policy.sources import PolicySources

SIGNATURES = ".signatures.json"
# OPA reads files of these names anywhere in a bundle as data, which outside the roots fails activation.
_OPA_DATA_NAMES = frozenset({"data.json", "data.yaml"})


@dataclass(frozen=True)
class Published:
    bucket: str
    key: str
    version_id: str | None  # None: the bucket is not versioned
    etag: str
    revision: str
    size: int


def config_files(config_dir: Path) -> dict[str, bytes]:
    """Every file under the config directory (hidden ones left out: .git, editors' swap files), by path."""
    files: dict[str, bytes] = {}
    for path in sorted(config_dir.rglob("*")):
        rel = path.relative_to(config_dir)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.name in _OPA_DATA_NAMES:
            raise BundleError(f"{path}: OPA would read a file named {path.name} in a bundle as policy data; "
                              "rename it")
        files[rel.as_posix()] = path.read_bytes()
    return files


def build_config_bundle(config_dir: Path, policy_dir: Path) -> Bundle:
    """Validate the config whole (policies included) and bundle it with the policies. Raises ConfigError
    (the config's problems), PolicyError or BundleError."""
    sources = PolicySources.load(policy_dir)
    cfg = load_config(config_dir, policy_dir=policy_dir)
    return build_bundle(sources, platform_document(cfg.tiers, cfg.regions, cfg.models), config_files(config_dir))


def default_author(config_dir: Path) -> str | None:
    """Who publishes: the last commit's author of the config's checkout, else the local user."""
    try:
        out = subprocess.run(["git", "-C", str(config_dir), "log", "-1", "--format=%an <%ae>", "--", "."],
                             capture_output=True, text=True, timeout=10, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return os.environ.get("USER") or None


def publish_config_bundle(bundle: Bundle, bucket: str, key: str, author: str | None = None,
                          origin: str | None = None, client: Any = None) -> Published:
    """Upload as a new version of s3://bucket/key with the metadata the S3 source checks and the audit log
    reads (sha256, revision, author, origin). Raises BundleError naming the object."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client or boto3.client("s3")
    metadata = {"revision": bundle.revision, "sha256": hashlib.sha256(bundle.archive).hexdigest()}
    if author:
        metadata["author"] = quote(author)  # S3 metadata is ASCII
    if origin:
        metadata["origin"] = quote(origin)
    try:
        answer = s3.put_object(Bucket=bucket, Key=key, Body=bundle.archive, ContentType=CONTENT_TYPE,
                               Metadata=metadata)
    except ClientError as err:
        error = err.response.get("Error", {})
        raise BundleError(f"cannot publish to s3://{bucket}/{key}: {error.get('Code', '?')}: "
                          f"{error.get('Message', err)}") from None
    except BotoCoreError as err:
        raise BundleError(f"cannot publish to s3://{bucket}/{key}: {err}") from None
    version = answer.get("VersionId")
    return Published(bucket, key, None if version in (None, "null") else str(version),
                     str(answer.get("ETag", "")).strip('"'), bundle.revision, len(bundle.archive))


def metadata_text(metadata: dict[str, str], name: str) -> str | None:
    value = metadata.get(name)
    return unquote(value) if value else None


def check_archive(archive: bytes, metadata: dict[str, str], where: str) -> dict[str, bytes]:
    """Verify a downloaded bundle; return its files (path -> bytes). Raises BundleError starting with
    `where` (the bucket, key and version)."""
    expected = metadata.get("sha256")
    if not expected:
        raise BundleError(f"{where}: the object has no sha256 metadata, so its bytes cannot be checked "
                          "(publish it with `fairshare config publish` / `make config-publish`)")
    actual = hashlib.sha256(archive).hexdigest()
    if actual != expected:
        raise BundleError(f"{where}: digest mismatch: the object's bytes hash to sha256 {actual}, its metadata "
                          f"says {expected} (corrupt or replaced object)")
    try:
        contents = read_bundle(archive)
    except BundleError as err:
        raise BundleError(f"{where}: {err}") from None
    files = contents.files
    if SIGNATURES in files:
        raise BundleError(f"{where}: the bundle is signed ({SIGNATURES}), and this control plane does not verify "
                          "OPA bundle signatures; publish it unsigned with `fairshare config publish`")
    recorded = (contents.manifest.get("metadata") or {}).get(ROOT) or {}
    if not isinstance(recorded, dict) or "digest" not in recorded:
        raise BundleError(f"{where}: the bundle carries no tenant config (a policy-only bundle from "
                          "`make policy-bundle`? publish with `make config-publish`)")
    if content_digest(files) != recorded["digest"]:
        raise BundleError(f"{where}: the bundle's files do not match the digest in its /{MANIFEST}")
    if not any(path.startswith(CONFIG_PREFIX) for path in files):
        raise BundleError(f"{where}: the bundle has no files under /{CONFIG_PREFIX}")
    return files


def unpack(files: dict[str, bytes], target: Path, previous: Path | None) -> None:
    """Write a checked bundle's config to target/config and its policies to target/policy. A file equal to
    the previous revision's is hard-linked to it: same inode and mtime, so the loader's per-file cache
    keeps its parse and a revision that changes one tenant re-reads one file."""
    for path, raw in files.items():
        if path.startswith(CONFIG_PREFIX):
            rel = path[len(CONFIG_PREFIX):]
            out_rel = PurePosixPath("config", rel)
        elif path.endswith(".rego"):
            out_rel = PurePosixPath("policy", path)
        else:
            continue  # the manifest and data.json: the control plane derives the platform data itself
        if out_rel.is_absolute() or ".." in out_rel.parts:
            raise BundleError(f"/{path}: a path outside the bundle")
        out = target / out_rel
        out.parent.mkdir(parents=True, exist_ok=True)
        old = previous / out_rel if previous is not None else None
        if old is not None and old.is_file() and old.stat().st_size == len(raw) and old.read_bytes() == raw:
            os.link(old, out)
        else:
            out.write_bytes(raw)
    if not (target / "config").is_dir():
        raise BundleError("the bundle has no config")
    if not (target / "policy").is_dir():
        raise BundleError("the bundle has no policies")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
