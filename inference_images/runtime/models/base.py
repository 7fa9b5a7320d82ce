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


@runtime_checkable
class Model(Protocol):
    """What the server needs from a model. Implementations live beside this file."""

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
