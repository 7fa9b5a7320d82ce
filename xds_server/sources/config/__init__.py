"""Where the config and policies come from (`--config-source`): the local folder, a versioned bundle on S3,
or a git checkout a sidecar keeps current. See base.py for the interface the control plane drives."""

from __future__ import annotations

from pathlib import Path

from xds_server.sources.config.base import ConfigSource, Revision, SourceError
from xds_server.sources.config.git import GitSource
from xds_server.sources.config.local import LocalSource
from xds_server.sources.config.s3 import S3Source

__all__ = ["ConfigSource", "GitSource", "LocalSource", "Revision", "S3Source", "SourceError", "from_spec"]

DEFAULT_POLL_SECONDS = 10.0


def from_spec(spec: str | None, config_dir: Path, unpack_dir: Path,
              poll_seconds: float = DEFAULT_POLL_SECONDS) -> ConfigSource:
    """`s3://bucket/key` (revisions unpacked under `unpack_dir`), `git:/path/to/checkout`, or None: the local
    `config_dir`. Raises SourceError for a spec that is none of these."""
    if spec is None or spec == "" or spec == "local":
        return LocalSource(config_dir)
    if spec.startswith("s3://"):
        if poll_seconds <= 0:
            raise SourceError(f"--poll-seconds must be positive, got {poll_seconds:g}")
        return S3Source(spec, unpack_dir, poll_seconds)
    if spec.startswith("git:"):
        path = spec[len("git:"):]
        if not path:
            raise SourceError("git: needs the checkout's path (git:/git/current)")
        return GitSource(Path(path).absolute())
    raise SourceError(f"--config-source {spec!r}: expected s3://bucket/key or git:/path/to/checkout "
                      "(or leave it out for the local --config folder)")
