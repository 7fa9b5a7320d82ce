"""What an artefact's sha256 is: a file's bytes as `sha256sum` prints it; a directory's manifest, one
`<sha256 of file>  <relative path>` line per file in byte order of the paths (symbolic links refused).

The one definition the runtime verifies against (models/artifacts.py) and the control plane's config load
checks a local artifact with (xds_server/config/loader.py), so the load accepts exactly the bytes a
replica will. Standard library only: the control plane's image carries this module, not the runtime.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


class ArtifactError(Exception):
    """An artefact that cannot be used; the message names the artefact and what is wrong with it."""


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    """The sha256 of a directory's manifest (see the module docstring); symlinks are refused."""
    lines = []
    for path in sorted(_tree_files(root), key=lambda p: p.relative_to(root).as_posix().encode()):
        lines.append(f"{file_digest(path)}  {path.relative_to(root).as_posix()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _tree_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*"):
        if path.is_symlink():
            raise ArtifactError(f"{root}: {path.relative_to(root)} is a symbolic link; artefacts hold plain files")
        if path.is_file():
            files.append(path)
    return files
