"""What the kubelet does with a ConfigMap volume, here on disk: project the keys to their item paths in a
timestamped directory, point `..data` at it, and link each top-level entry through `..data`. An update
writes a new directory and swaps `..data` with one rename (atomic), as the kubelet's AtomicWriter does."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any


def items(deployment: dict[str, Any], volume: str) -> list[dict[str, str]]:
    for v in deployment["spec"]["template"]["spec"]["volumes"]:
        if v["name"] == volume:
            return list(v["configMap"].get("items", []))
    raise AssertionError(f"no volume {volume!r}")


def project(target: Path, data: dict[str, str], paths: list[dict[str, str]],
            binary_data: dict[str, str] | None = None) -> None:
    """Write (or atomically replace) the volume's contents at `target`: `data` as text, `binary_data`
    (base64, as in a ConfigMap's binaryData) as the bytes it encodes."""
    binary = {k: base64.b64decode(v) for k, v in (binary_data or {}).items()}
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    projected = paths or [{"key": k, "path": k} for k in (*data, *binary)]
    for item in projected:
        dest = stamp / item["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if item["key"] in binary:
            dest.write_bytes(binary[item["key"]])
        else:
            dest.write_text(data[item["key"]])
    data_link = target / "..data"
    old = data_link.resolve() if data_link.is_symlink() else None
    tmp = target / "..data_tmp"
    os.symlink(stamp.name, tmp)
    os.replace(tmp, data_link)
    for top in {Path(item["path"]).parts[0] for item in projected}:
        link = target / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    if old is not None:
        for p in sorted(old.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        old.rmdir()
