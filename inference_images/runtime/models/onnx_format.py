"""The ``onnx`` format: any ONNX graph, tensors in and tensors out, run by onnxruntime.

The graph declares the model's contract: its inputs' and outputs' names, element types and shapes become
the OIP metadata (``GET /v2/models/{m}``) and what requests are held to (``protocol.check_against_model``
answers 400 naming the input and what the graph expects), so ``predict`` only sees tensors the graph
accepts. A symbolic or unknown dimension is ``-1`` (any size) in the metadata.

Execution providers: CUDA when onnxruntime offers it and the device asked for allows it (``auto``, the
default, or ``cuda[:N]``), else the CPU; an explicit ``cuda`` that onnxruntime cannot honour fails the load
with the reason, as the torch models do. The CPU arena is off, so a session's memory is what it holds and
its footprint can be measured (``models.footprint``); one intra-op thread per session by default, because
a replica holds many sessions and runs one forward pass at a time on its worker
(``FAIRSHARE_ONNX_THREADS`` raises it for a replica serving a few large graphs).

Used three ways: a catalog model (loader ``onnx`` with ``--artifact``), a tenant's own model, and the head
of a ``head`` model (``head_format``). onnxruntime is imported on first use only.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference_images.runtime.models import footprint
from inference_images.runtime.models.base import ANY_DIM, LoadOptions, Tensor, TensorSpec
from inference_images.runtime.models.device import AUTO, DeviceUnavailableError, parse_device

if TYPE_CHECKING:
    from inference_images.runtime.models.registry import LoaderRegistry

log = logging.getLogger(__name__)

PLATFORM = "onnxruntime"
THREADS_ENV = "FAIRSHARE_ONNX_THREADS"
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

# onnxruntime element type -> OIP datatype (and the numpy dtype name requests are converted to).
_OIP_TYPES: dict[str, tuple[str, str]] = {
    "tensor(float)": ("FP32", "float32"),
    "tensor(double)": ("FP64", "float64"),
    "tensor(float16)": ("FP16", "float16"),
    "tensor(int8)": ("INT8", "int8"),
    "tensor(int16)": ("INT16", "int16"),
    "tensor(int32)": ("INT32", "int32"),
    "tensor(int64)": ("INT64", "int64"),
    "tensor(uint8)": ("UINT8", "uint8"),
    "tensor(uint16)": ("UINT16", "uint16"),
    "tensor(uint32)": ("UINT32", "uint32"),
    "tensor(uint64)": ("UINT64", "uint64"),
    "tensor(bool)": ("BOOL", "bool"),
    "tensor(string)": ("BYTES", "object"),
}
_NUMPY_TO_OIP = {numpy_name: oip for oip, numpy_name in _OIP_TYPES.values()}

# A one-node Identity graph (65 bytes): building it once at start spends onnxruntime's one-time set-up
# (about 9 MB of RSS) before any tenant's load is measured and charged.
_WARM_UP_GRAPH = base64.b64decode(
    "CAg6NwoQCgF4EgF5IghJZGVudGl0eRIBd1oPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0="
)


class OnnxFormatError(ValueError):
    """A graph that cannot be served; the message names the graph and what is wrong."""


_preloaded = False


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _preload_cuda(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries that pip installed (onnxruntime-gpu's extras) before the first
    CUDA session, so the provider finds them without LD_LIBRARY_PATH. Once; harmless where absent."""
    global _preloaded
    if not _preloaded:
        _preloaded = True
        try:
            ort.preload_dlls()
        except Exception as exc:  # older builds, or libraries elsewhere on the path: let the provider look
            log.warning("onnxruntime could not preload CUDA libraries", extra={"reason": str(exc)})


def warm_up() -> None:
    """Pay onnxruntime's one-time start-up cost now, outside any measured load."""
    ort = _ort()
    ort.InferenceSession(_WARM_UP_GRAPH, _session_options(), providers=[CPU_PROVIDER])


def _threads() -> int:
    raw = os.environ.get(THREADS_ENV, "1")
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise OnnxFormatError(f"{THREADS_ENV}={raw!r} must be a positive integer")
    return threads


def _session_options() -> Any:
    options = _ort().SessionOptions()
    # Off so that a session's memory is exactly what it holds: measurable, and returned when it goes.
    options.enable_cpu_mem_arena = False
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers would flood the log per tenant
    return options


def _providers(requested: str) -> list[Any]:
    """Providers in preference order for a requested device (auto, cpu, cuda, cuda:N)."""
    if requested == "cpu":
        return [CPU_PROVIDER]
    available = _ort().get_available_providers()
    if CUDA_PROVIDER not in available:
        if requested != AUTO:
            raise DeviceUnavailableError(
                f"device {requested} requested but onnxruntime offers no CUDA provider here "
                f"(available: {', '.join(available)})"
            )
        return [CPU_PROVIDER]
    _preload_cuda(_ort())
    index = int(requested.partition(":")[2] or 0)
    # kSameAsRequested: the device arena grows by what a session asks for, so its footprint is its own.
    cuda = (CUDA_PROVIDER, {"device_id": index, "arena_extend_strategy": "kSameAsRequested"})
    return [cuda, CPU_PROVIDER]


def _spec(arg: Any, where: str) -> TensorSpec:
    try:
        datatype = _OIP_TYPES[arg.type][0]
    except KeyError:
        raise OnnxFormatError(
            f"{where} '{arg.name}' is a {arg.type}, which OIP cannot carry (tensors only: export classifiers "
            "without ZipMap, e.g. skl2onnx options={'zipmap': False})"
        ) from None
    shape = tuple(d if isinstance(d, int) and d >= 0 else ANY_DIM for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


@dataclass(frozen=True, slots=True)
class LoadedGraph:
    session: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    device: str
    # Bytes the session left resident (host RSS growth, plus device memory on a GPU).
    footprint_bytes: int


def load_graph(source: Path | bytes, device: str | None, what: str) -> LoadedGraph:
    """Build a session for an ONNX graph: a file, a directory holding one, or the verified bytes themselves
    (``ArtifactStore.fetch_bytes``: no copy read back from disk); ``what`` names the model in every error."""
    requested = parse_device(device or AUTO)
    if isinstance(source, Path) and source.is_dir():
        graphs = sorted(source.glob("*.onnx"))
        if len(graphs) != 1:
            raise OnnxFormatError(
                f"{what}: the artefact directory must hold exactly one .onnx file, found {len(graphs)}"
            )
        source = graphs[0]
    model: str | bytes = source if isinstance(source, bytes) else str(source)
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    providers = _providers(requested)
    ort = _ort()
    measure_on = "cuda" if providers[0] != CPU_PROVIDER else "cpu"
    try:
        session, grown = footprint.measured(
            lambda: ort.InferenceSession(model, _session_options(), providers=providers), measure_on
        )
    except Exception as exc:  # onnxruntime raises its own types (InvalidGraph, Fail, ...) for bad files
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OnnxFormatError(f"{what}: not a loadable ONNX graph ({type(exc).__name__}: {detail[:300]})") from None
    used = session.get_providers()
    if requested.startswith("cuda") and CUDA_PROVIDER not in used:
        raise DeviceUnavailableError(f"{what}: device {requested} requested but onnxruntime fell back to {used}")
    inputs = tuple(_spec(arg, "input") for arg in session.get_inputs())
    outputs = tuple(_spec(arg, "output") for arg in session.get_outputs())
    if not inputs or not outputs:
        raise OnnxFormatError(f"{what}: the graph has no inputs or no outputs")
    on_device = f"cuda:{requested.partition(':')[2] or 0}" if CUDA_PROVIDER in used else "cpu"
    # The floor: a reading disturbed by another thread freeing memory must not make a model look free.
    return LoadedGraph(session, inputs, outputs, on_device, max(grown, size))


def to_numpy(tensor: Tensor, spec: TensorSpec) -> Any:
    import numpy as np

    dtype = _OIP_TYPES_BY_OIP[spec.datatype]
    array = np.array(tensor.data, dtype=dtype)
    return array.reshape(tensor.shape)


_OIP_TYPES_BY_OIP = {oip: numpy_name for oip, numpy_name in _OIP_TYPES.values()}


def from_numpy(name: str, value: Any, what: str) -> Tensor:
    import numpy as np

    if not isinstance(value, np.ndarray):
        raise OnnxFormatError(f"{what}: output '{name}' is a {type(value).__name__}, not a tensor")
    if value.dtype.kind in ("U", "S", "O"):
        data = [item.decode() if isinstance(item, bytes) else str(item) for item in value.ravel().tolist()]
        return Tensor(name, "BYTES", tuple(value.shape), data)
    datatype = _NUMPY_TO_OIP.get(value.dtype.name)
    if datatype is None:
        raise OnnxFormatError(f"{what}: output '{name}' has element type {value.dtype.name}, which OIP cannot carry")
    return Tensor(name, datatype, tuple(value.shape), value.ravel().tolist())


def run_graph(graph: LoadedGraph, inputs: Mapping[str, Tensor], what: str) -> list[Tensor]:
    """One forward pass; inputs are already validated against ``graph.inputs``."""
    feeds = {spec.name: to_numpy(inputs[spec.name], spec) for spec in graph.inputs}
    names = [spec.name for spec in graph.outputs]
    values: Sequence[Any] = graph.session.run(names, feeds)
    return [from_numpy(name, value, what) for name, value in zip(names, values, strict=True)]


def rows(inputs: Mapping[str, Tensor]) -> float:
    """Cost hint: the rows of the first batched input (the scheduler learns the time per row)."""
    for tensor in inputs.values():
        return float(max(tensor.shape[0], 1)) if tensor.shape else 1.0
    return 1.0


class OnnxModel:
    """An ONNX graph served as a model; its tensors are known once loaded."""

    platform = PLATFORM

    def __init__(
        self,
        name: str,
        version: str,
        *,
        artifact: Path | None = None,
        content: bytes | None = None,
        device: str | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self._artifact = artifact
        # The verified graph itself (a tenant's model, fetched into memory), dropped once the session holds it.
        self._content = content
        self._requested_device = device
        self._graph: LoadedGraph | None = None

    def configure(self, options: LoadOptions) -> None:
        self._artifact = options.artifact
        self._requested_device = options.device

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._graph.inputs if self._graph is not None else ()

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._graph.outputs if self._graph is not None else ()

    @property
    def device(self) -> str:
        return self._graph.device if self._graph is not None else "unloaded"

    @property
    def footprint_bytes(self) -> int:
        return self._graph.footprint_bytes if self._graph is not None else 0

    @property
    def graph(self) -> LoadedGraph:
        if self._graph is None:
            raise RuntimeError(f"model '{self.name}' version '{self.version}' is not loaded")
        return self._graph

    def load(self) -> None:
        source: Path | bytes | None = self._content if self._content is not None else self._artifact
        if source is None:
            raise OnnxFormatError(
                f"model '{self.name}' version '{self.version}': the onnx loader needs an artifact "
                "(--artifact NAME:VERSION=URI#sha256=HEX)"
            )
        what = f"model '{self.name}' version '{self.version}'"
        self._graph = load_graph(source, self._requested_device, what)
        self._content = None

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        return run_graph(self.graph, inputs, f"model '{self.name}'")

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        return rows(inputs)


def register(registry: LoaderRegistry) -> None:
    registry.register("onnx", OnnxModel)
