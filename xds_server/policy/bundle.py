"""An OPA bundle of the policies and the platform context, for OPAs that load or poll bundles.

The bundle is a gzipped tarball in OPA's bundle format: `/.manifest` (revision, the `fairshare`
root, Rego v1), every policy module (tests left out) at its path under policy/, and `/data.json`
holding the platform context at `data.fairshare.platform`. An OPA that loads it answers
`data.fairshare.tenant.result` for `{"tenants": {...}}` with nothing pushed by the control plane.
The archive is byte-for-byte reproducible: the same policies and config give the same bytes, so a
publisher can compare before uploading and OPA's polling sees a new revision only on a real change.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from xds_server.policy.sources import PolicySources

ROOT = "fairshare"
MANIFEST = ".manifest"
DATA = "data.json"
CONTENT_TYPE = "application/gzip"
CONFIG_PREFIX = "config/"  # where a config bundle carries the tenant config

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)


class BundleError(Exception):
    """A bundle that cannot be read, or a publish that failed: names the file or the S3 location."""


@dataclass(frozen=True)
class Bundle:
    revision: str
    archive: bytes  # the .tar.gz as OPA reads it


@dataclass(frozen=True)
class BundleContents:
    manifest: dict[str, Any]
    modules: dict[str, str]  # path inside the bundle (no leading slash) -> Rego source
    data: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)  # every regular file, raw (a config bundle's config)


def bundle_revision(sources: PolicySources, platform: dict[str, Any]) -> str:
    """The policy revision plus a digest of the platform context: either changing is a new bundle."""
    digest = hashlib.blake2b(json.dumps(platform, sort_keys=True, separators=(",", ":")).encode(), digest_size=8)
    return f"{sources.revision}-{digest.hexdigest()}"


def build_bundle(sources: PolicySources, platform: dict[str, Any], config: dict[str, bytes] | None = None) -> Bundle:
    """`platform`: the platform context as the policies read it (resolve.platform_document). `config`: the
    tenant config's files (path under the config directory -> bytes), carried under `/config/` for a
    control plane that reads its config from the bundle (xds_server/sources/config); OPA ignores them.
    With it, the manifest's `metadata.fairshare` holds a digest of every file, which that reader checks."""
    revision = bundle_revision(sources, platform)
    files: dict[str, bytes] = {
        DATA: _json({ROOT: {"platform": platform}}),
        **{path: text.encode() for path, text in sources.modules.items()},
    }
    manifest: dict[str, Any] = {"revision": revision, "roots": [ROOT], "rego_version": 1}
    if config is not None:
        files.update({f"{CONFIG_PREFIX}{path}": raw for path, raw in config.items()})
        digest = content_digest(files)
        manifest["revision"] = f"{revision}-{digest[:16]}"
        manifest["metadata"] = {ROOT: {"digest": digest, "config_files": len(config)}}
    files[MANIFEST] = _json(manifest)
    revision = manifest["revision"]
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            # Fixed owner, mode and time: the archive's bytes depend on the content alone.
            info = tarfile.TarInfo("/" + path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[path]))
    return Bundle(revision, gzip.compress(tar_bytes.getvalue(), mtime=0))


def content_digest(files: dict[str, bytes]) -> str:
    """sha256 over every file but the manifest (path and bytes): what a config bundle's manifest records."""
    digest = hashlib.sha256()
    for path in sorted(files):
        if path != MANIFEST:
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


def read_bundle(archive: bytes) -> BundleContents:
    """Unpack a bundle and check what OPA checks when it activates one: a manifest, every module's
    package and every data path under the manifest's roots. Raises BundleError naming the file."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            files = {m.name.lstrip("/"): _member(tar, m) for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BundleError(f"not a gzipped tar bundle: {err}") from None
    if MANIFEST not in files:
        raise BundleError(f"bundle has no /{MANIFEST}")
    manifest = _load_json(MANIFEST, files[MANIFEST])
    roots = manifest.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise BundleError(f"/{MANIFEST}: roots must be a list of strings, got {roots!r}")
    data = _load_json(DATA, files[DATA]) if DATA in files else {}
    if not isinstance(data, dict):
        raise BundleError(f"/{DATA}: must be a JSON object")
    for key in data:
        if not _under(key, roots):
            raise BundleError(f"/{DATA}: data.{key} is outside the bundle's roots {roots}")
    modules: dict[str, str] = {}
    for path, raw in sorted(files.items()):
        if not path.endswith(".rego"):
            continue
        text = raw.decode("utf-8", errors="replace")
        package = _PACKAGE.search(text)
        if package is None:
            raise BundleError(f"/{path}: no package declaration")
        if not _under(package.group(1).replace(".", "/"), roots):
            raise BundleError(f"/{path}: package {package.group(1)} is outside the bundle's roots {roots}")
        modules[path] = text
    return BundleContents(manifest, modules, data, files)


def publish_bundle(bundle: Bundle, url: str) -> str:
    """Upload to `s3://bucket/key` for OPA's bundle polling. The endpoint and credentials are boto3's
    usual ones (AWS_ENDPOINT_URL, AWS_PROFILE, ...). Returns the object's ETag."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3_url(url)
    try:
        answer = boto3.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=bundle.archive,
            ContentType=CONTENT_TYPE,
            Metadata={"revision": bundle.revision},
        )
    except ClientError as err:
        error = err.response.get("Error", {})
        raise BundleError(f"cannot publish to {url}: {error.get('Code', '?')}: {error.get('Message', err)}") from None
    except BotoCoreError as err:
        raise BundleError(f"cannot publish to {url}: {err}") from None
    return str(answer.get("ETag", "")).strip('"')


def parse_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key or key.endswith("/"):
        raise BundleError(f"{url!r} is not an S3 object URL (expected s3://bucket/path/bundle.tar.gz)")
    return parts.netloc, key


def _under(path: str, roots: list[str]) -> bool:
    return any(root == "" or path == root or path.startswith(root + "/") for root in roots)


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    if extracted is None:
        raise BundleError(f"/{member.name.lstrip('/')}: cannot be read")
    return extracted.read()


def _load_json(name: str, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as err:
        raise BundleError(f"/{name}: not valid JSON: {err}") from None


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
