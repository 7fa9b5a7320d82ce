"""The ``head`` format: a tenant's small ONNX graph over a catalog model's output.

Thousands of tenants share one backbone (the embedder) and each costs only its head: a request runs the
base model (batched across tenants with every other request for that base, as the catalog's own traffic
is) and then the head on the base's output. The head model's inputs are the base's (text in), its outputs
the head graph's (logits, probabilities, labels).

The head graph takes one input; it is fed the base output of the same name, or the base's only output
when the names differ (``embedding`` -> ``input``). Its element type and fixed dimensions must fit the
base output's, checked when the head loads, so a head exported for another backbone fails with both
shapes named instead of failing every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inference_images.runtime.models.base import ANY_DIM, Model, RequestLimits, Tensor, TensorSpec, request_limits
from inference_images.runtime.models.onnx_format import (
    PLATFORM,
    LoadedGraph,
    OnnxFormatError,
    load_graph,
    rows,
    run_graph,
)

HEAD_PLATFORM = f"{PLATFORM}-head"


@dataclass(frozen=True, slots=True)
class BaseRef:
    """The catalog model a head runs over: ``name/version``."""

    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> BaseRef:
        name, sep, version = text.partition("/")
        if not sep or not name or not version or "/" in version:
            raise ValueError(f"base model {text!r} must be NAME/VERSION (e.g. embedder/v1)")
        return cls(name, version)

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("n" if d == ANY_DIM else str(d) for d in shape) + "]"


def _fits(base: TensorSpec, head: TensorSpec) -> bool:
    if base.datatype != head.datatype or len(base.shape) != len(head.shape):
        return False
    return all(h == ANY_DIM or b == h for b, h in zip(base.shape, head.shape, strict=True))


def feed_for(base: Model, head_input: TensorSpec, what: str) -> TensorSpec:
    """The base output that feeds the head's input; an OnnxFormatError naming both when none fits."""
    outputs = {spec.name: spec for spec in base.outputs}
    chosen = outputs.get(head_input.name) or (base.outputs[0] if len(base.outputs) == 1 else None)
    if chosen is None:
        raise OnnxFormatError(
            f"{what}: head input '{head_input.name}' matches no output of base model "
            f"'{base.name}/{base.version}' (outputs: {', '.join(sorted(outputs))})"
        )
    if not _fits(chosen, head_input):
        raise OnnxFormatError(
            f"{what}: head input '{head_input.name}' expects {head_input.datatype} {_shape_text(head_input.shape)} "
            f"but base model '{base.name}/{base.version}' outputs '{chosen.name}' as "
            f"{chosen.datatype} {_shape_text(chosen.shape)}"
        )
    return chosen


class HeadModel:
    """A head graph over a base model; the server runs ``base`` through the scheduler's batching, then
    ``apply_head`` on its outputs. ``predict`` does both in one call (for a caller without a scheduler)."""

    platform = HEAD_PLATFORM

    def __init__(self, name: str, version: str, base: Model, graph: LoadedGraph, feed: TensorSpec) -> None:
        self.name = name
        self.version = version
        self.base = base
        self._graph = graph
        self._feed = feed

    @classmethod
    def build(
        cls, name: str, version: str, base: Model, source: Path | bytes, device: str | None = None
    ) -> HeadModel:
        """``source``: the head graph's file, or its verified bytes (``onnx_format.load_graph``)."""
        what = f"head model '{name}' version '{version}'"
        graph = load_graph(source, device, what)
        if len(graph.inputs) != 1:
            raise OnnxFormatError(
                f"{what}: a head graph takes exactly one input (the base's output), this one takes "
                f"{len(graph.inputs)}: {', '.join(spec.name for spec in graph.inputs)}"
            )
        return cls(name, version, base, graph, feed_for(base, graph.inputs[0], what))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.base.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._graph.outputs

    @property
    def device(self) -> str:
        return self._graph.device

    @property
    def request_limits(self) -> RequestLimits:
        # A request is as large as its base allows: the head only sees the base's output rows.
        return request_limits(self.base)

    @property
    def footprint_bytes(self) -> int:
        # The base is the catalog's, pinned and shared: a head costs only its own graph.
        return self._graph.footprint_bytes

    def load(self) -> None:
        """Nothing left to do: ``build`` loaded the graph (the cache builds heads on its loader pool)."""

    def apply_head(self, base_outputs: list[Tensor]) -> list[Tensor]:
        """The head's forward pass over the base's outputs (on the worker thread)."""
        by_name = {tensor.name: tensor for tensor in base_outputs}
        feed = by_name[self._feed.name]
        head_input = self._graph.inputs[0]
        renamed = Tensor(head_input.name, feed.datatype, feed.shape, feed.data)
        return run_graph(self._graph, {head_input.name: renamed}, f"head model '{self.name}'")

    def head_cost(self, base_outputs: list[Tensor]) -> float:
        return rows({tensor.name: tensor for tensor in base_outputs})

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        return self.apply_head(self.base.predict(inputs))

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        return self.base.cost_hint(inputs)
