"""Tenants' own models: what identifies one (from the gateway's headers), and how one is built by format.

A tenant's model is keyed by ``(owner, name, version, sha256)``: the same name under another tenant is
another model, and new bytes under the same version are another load. Its qualified name, in the
repository extension and in metrics, is ``owner:name`` (``:`` is in neither alphabet, so it cannot
collide). The runtime learns everything about it from the request's route (docs/design/0003): nothing is
pushed to it, and a replica that has never seen a model can serve it.

``OwnModelLoader`` is what the model cache calls on its loader pool: fetch and verify the artefact
(``artifacts.ArtifactStore``: the sha256 is checked before any byte is parsed), then build the model
for its format. A single-file graph is fetched into memory and the session built from those verified
bytes (no copy written and read back on the load's path); an archive or a directory is fetched to disk.
Every failure is an exception whose message names the model and the check, never data. Each load reports
the seconds of its steps (``fetch``: download or read, and the sha256; ``build``: the session and its
footprint), which the cache logs and the benchmark breaks cold loads down by.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from inference_images.runtime.models.artifacts import ArtifactRef, ArtifactStore
from inference_images.runtime.models.base import Model
from inference_images.runtime.models.head_format import BaseRef, HeadModel
from inference_images.runtime.models.onnx_format import OnnxModel
from inference_images.runtime.models.registry import ModelNotFoundError, valid_name

if TYPE_CHECKING:
    from inference_images.runtime.models.registry import ModelRepository

ONNX = "onnx"
HEAD = "head"
FORMATS = (ONNX, HEAD)


class BaseUnavailableError(LookupError):
    """A head's base model is not served (or not ready) on this replica."""


@dataclass(frozen=True, slots=True)
class OwnModelKey:
    owner: str
    name: str
    version: str
    sha256: str

    @property
    def qualified(self) -> str:
        return f"{self.owner}:{self.name}"

    def __str__(self) -> str:
        return f"{self.qualified} version {self.version}"


@dataclass(frozen=True, slots=True)
class OwnModelRef:
    """Everything needed to load one version of a tenant's model."""

    owner: str
    name: str
    version: str
    format: str
    artifact: ArtifactRef
    base: BaseRef | None = None

    @classmethod
    def parse(
        cls,
        *,
        owner: str,
        name: str,
        version: str | None,
        format: str | None,
        artifact: str | None,
        sha256: str | None,
        base: str | None = None,
        size: str | None = None,
    ) -> OwnModelRef:
        """Check each field; a ValueError names the field that is wrong."""
        for what, value in (("owner", owner), ("name", name), ("version", version)):
            if not value or not valid_name(value):
                raise ValueError(
                    f"own model {what} {value!r} must be 1-63 characters of letters, digits, '_', '.', '-'"
                )
        assert version is not None
        if format not in FORMATS:
            raise ValueError(f"own model {owner}:{name}: format {format!r} must be one of {', '.join(FORMATS)}")
        if not artifact or not sha256:
            raise ValueError(f"own model {owner}:{name}: an artifact and its sha256 are required")
        ref = ArtifactRef.parse(f"{artifact}#sha256={sha256}")
        if size is not None:
            if not size.isdigit() or int(size) < 1:
                raise ValueError(f"own model {owner}:{name}: artifact size {size!r} must be a positive number of bytes")
            ref = replace(ref, size=int(size))
        if not ref.is_s3 and not ref.uri.removeprefix("file://").startswith("/"):
            raise ValueError(f"own model {owner}:{name}: a local artifact path must be absolute, got {artifact!r}")
        base_ref = None
        if format == HEAD:
            if not base:
                raise ValueError(f"own model {owner}:{name}: a head model needs its base (NAME/VERSION)")
            base_ref = BaseRef.parse(base)
        elif base:
            raise ValueError(f"own model {owner}:{name}: only head models take a base")
        return cls(owner, name, version, format, ref, base_ref)

    @property
    def key(self) -> OwnModelKey:
        return OwnModelKey(self.owner, self.name, self.version, self.artifact.sha256)

    @property
    def qualified(self) -> str:
        return self.key.qualified


@dataclass(frozen=True, slots=True)
class LoadedModel:
    model: Model
    # Measured bytes the model holds while resident (models.footprint), what the cache budgets by.
    footprint_bytes: int
    # Seconds by step of the load ("fetch", "build"), for logs and the benchmark's breakdown.
    steps: Mapping[str, float] = field(default_factory=dict)


# What the cache calls (on a loader thread) to turn a reference into a resident model.
ModelLoader = Callable[[OwnModelRef], LoadedModel]


def resolve_base(catalog: ModelRepository | None, ref: OwnModelRef) -> Model:
    """The ready catalog model a head runs over, or BaseUnavailableError naming it."""
    assert ref.base is not None
    if catalog is None:
        raise BaseUnavailableError(f"base model '{ref.base}' of head model '{ref.qualified}': no catalog here")
    try:
        entry = catalog.resolve(ref.base.name, ref.base.version)
    except ModelNotFoundError:
        raise BaseUnavailableError(
            f"base model '{ref.base}' of head model '{ref.qualified}' is not served by this replica "
            f"(catalog here: {', '.join(catalog.names())})"
        ) from None
    if not entry.ready:
        raise BaseUnavailableError(
            f"base model '{ref.base}' of head model '{ref.qualified}' is not ready on this replica "
            f"({entry.describe()})"
        )
    return entry.model


class OwnModelLoader:
    """Fetch, verify and build a tenant's model (runs on the cache's loader pool)."""

    def __init__(self, store: ArtifactStore, catalog: ModelRepository | None = None, device: str | None = None) -> None:
        self._store = store
        self._catalog = catalog
        self._device = device

    def __call__(self, ref: OwnModelRef) -> LoadedModel:
        started = time.perf_counter()
        base = None
        if ref.format == HEAD:
            # Before the download: a head routed to a replica without its base fails at once.
            base = resolve_base(self._catalog, ref)
        verified = self._store.fetch_bytes(ref.artifact)
        source: Path | bytes = verified.data if verified is not None else self._store.fetch(ref.artifact)
        fetched = time.perf_counter()
        model: Model
        if base is not None:
            head = HeadModel.build(ref.qualified, ref.version, base, source, self._device)
            model, footprint_bytes = head, head.footprint_bytes
        else:
            if isinstance(source, bytes):
                onnx = OnnxModel(ref.qualified, ref.version, content=source, device=self._device)
            else:
                onnx = OnnxModel(ref.qualified, ref.version, artifact=source, device=self._device)
            onnx.load()
            model, footprint_bytes = onnx, onnx.footprint_bytes
        steps = {"fetch": fetched - started, "build": time.perf_counter() - fetched}
        if verified is not None:
            # Only now, so the copy's write does not compete with the session build for the cores.
            self._store.keep(verified)
        return LoadedModel(model, footprint_bytes, steps)


