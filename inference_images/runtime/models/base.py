"""The contract every served model meets, and the tensors that cross it.

A model is created cheap (by a loader, at startup) and made usable by ``load()``, which may be slow and
runs on a loader thread so the server answers liveness meanwhile. ``predict`` runs on the scheduler's
worker thread, never on the event loop, so it may block (torch) freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# Stands for "any size" on one axis of a TensorSpec shape, as in OIP model metadata.
ANY_DIM = -1


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output a model declares in its metadata."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A tensor in OIP JSON form: row-major data flattened into one plain list.

    Plain lists (not numpy arrays) keep the type JSON-ready; models convert inside ``predict``, which
    runs off the event loop, so the loop only serialises.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "datatype": self.datatype, "data": self.data}


# What a model that declares no limits accepts per request (``request_limits``). Rows are the first axis of
# its inputs; bytes default to the server's body limit alone.
DEFAULT_MAX_ROWS = 4096


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How much one request may ask of a model, checked before it is queued (larger: 413 naming the limit).

    A model declares them as a ``request_limits`` class attribute; one that does not gets
    ``DEFAULT_REQUEST_LIMITS`` (see ``request_limits``), and ``--request-limit`` overrides either.
    ``chunk_rows`` is how many rows one ``predict`` call gets: a larger request runs in several calls, and
    the runtime stops between two of them when the request's deadline passed or its client left, so no
    request holds the worker long past the moment nobody waits for it. None: one call per request.
    """

    max_rows: int = DEFAULT_MAX_ROWS
    # Bytes of tensor data (UTF-8 text, or element size times count); None: only the body limit applies.
    max_bytes: int | None = None
    chunk_rows: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_bytes", "chunk_rows"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"request limit {name} must be a positive integer, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> tuple[str, RequestLimits]:
        """``MODEL:MAX_ROWS[:MAX_BYTES]`` from the command line -> (model name, limits to apply).

        The chunk size stays the model's own; omitted bytes keep the model's byte limit."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ValueError(f"request limit {text!r} must be MODEL:MAX_ROWS or MODEL:MAX_ROWS:MAX_BYTES")
        try:
            rows = int(parts[1])
            max_bytes = int(parts[2]) if len(parts) == 3 else None
        except ValueError:
            raise ValueError(f"request limit {text!r}: MAX_ROWS and MAX_BYTES must be integers") from None
        return parts[0], cls(rows, max_bytes)

    def overridden_by(self, override: RequestLimits) -> RequestLimits:
        """These limits with an operator's override applied (its rows, and its bytes when it set them)."""
        max_bytes = override.max_bytes if override.max_bytes is not None else self.max_bytes
        return RequestLimits(override.max_rows, max_bytes, self.chunk_rows)


DEFAULT_REQUEST_LIMITS = RequestLimits()


def request_limits(model: object) -> RequestLimits:
    """The model's declared ``request_limits``, or the runtime's default for a model that declares none.

    An optional attribute rather than a member of ``Model``, so every model (and any format added later)
    is limited without having to say anything."""
    declared = getattr(model, "request_limits", None)
    return declared if isinstance(declared, RequestLimits) else DEFAULT_REQUEST_LIMITS


@runtime_checkable
class Model(Protocol):
    """What the server needs from a model. Implementations live beside this file.

    Optional: ``request_limits`` (a ``RequestLimits``), how many rows and bytes one request may carry
    and how many rows one ``predict`` call gets; without it the runtime's defaults apply."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def platform(self) -> str:
        """Free-form framework name reported in model metadata (OIP ``platform``)."""
        ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def device(self) -> str:
        """Where predict runs ("cpu", "cuda"); meaningful once loaded."""
        ...

    def load(self) -> None:
        """Make the model ready; raise with a readable message if it cannot be."""
        ...

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Run one batch. Inputs are already validated against ``inputs`` (names, datatypes, ranks)."""
        ...

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        """A cheap estimate of the work ``predict`` would do, in the model's own unit.

        The scheduler uses it before the work runs (fair queuing needs a cost up front); the measured
        service time corrects it afterwards.
        """
        ...


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What the registry resolved for a model before ``load()``: where its verified artefact lies (None:
    the model's built-in default) and the device asked for (None or "auto": CUDA when present)."""

    artifact: Path | None = None
    device: str | None = None


@runtime_checkable
class Configurable(Protocol):
    """A model that can take an artefact or a device. ``configure`` runs on the loader thread just before
    ``load()``; it should only record the options (and reject ones it cannot honour, with a reason)."""

    def configure(self, options: LoadOptions) -> None: ...
