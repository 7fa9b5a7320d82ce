"""Open Inference Protocol (KServe v2) REST shapes: parse and validate requests, build responses.

Everything a client can get wrong is caught here and reported as a ``ProtocolError`` whose message names
the input and the field, so the server answers 400 ``{"error": message}`` (the OIP error format).
Validation runs in two steps: the request on its own (``parse_infer_request``), then against the model's
declared tensors (``check_against_model``), so a model's ``predict`` only ever sees inputs it declared.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inference_images.runtime.models.base import ANY_DIM, Model, RequestLimits, Tensor, TensorSpec

_INT_RANGES: dict[str, tuple[int, int]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
DATATYPES = frozenset({"BOOL", "BYTES", *_INT_RANGES, *_FLOAT_TYPES})
# Nested data deeper than this is not a tensor anyone sends; the bound keeps flattening cheap and safe.
_MAX_RANK = 16
# Arrays and objects in a request body nest at most this deep: a request object, its inputs, a tensor, and
# its data at _MAX_RANK, with room for parameters. Deeper bodies are refused before anything walks them.
MAX_JSON_DEPTH = 32
_ELEMENT_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2,
                  "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}  # fmt: skip


class ProtocolError(ValueError):
    """A request that breaks the protocol or the model's contract. ``str()`` is the client-facing reason."""


class RequestTooLargeError(ProtocolError):
    """A well-formed request larger than the model takes per request (answered 413, naming the limit)."""


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    id: str | None
    parameters: Mapping[str, Any]
    inputs: tuple[Tensor, ...]
    # None means "every output the model has", as OIP specifies for a missing "outputs".
    outputs: tuple[RequestedOutput, ...] | None

    def input_map(self) -> dict[str, Tensor]:
        return {tensor.name: tensor for tensor in self.inputs}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body; NaN and Infinity are refused because they are not JSON, and arrays or
    objects nested deeper than ``max_depth`` because no request needs them."""
    if not body.strip():
        raise ProtocolError("request body is empty; expected a JSON object")
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        # Python's decoder recurses per level: a body nested past the interpreter's limit never parses.
        raise ProtocolError(_too_deep(max_depth, _deep_offset(body, max_depth))) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body is not valid JSON: {exc}") from None
    path = _deep_path(doc, max_depth)
    if path is not None:
        raise ProtocolError(_too_deep(max_depth, f"at {path}"))
    return doc


def _too_deep(max_depth: int, where: str) -> str:
    return f"request body nests arrays and objects more than {max_depth} levels deep ({where})"


# Strings (which may hold brackets) or a bracket, for finding where a body too deep to parse goes too deep.
_STRUCTURE_RE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _deep_offset(body: bytes, max_depth: int) -> str:
    depth = 0
    for match in _STRUCTURE_RE.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return f"at byte {match.start()}"
        elif token in (b"]", b"}"):
            depth -= 1
    return "somewhere in the body"


def _deep_path(doc: Any, max_depth: int) -> str | None:
    """Where ``doc`` first nests deeper than ``max_depth`` (a JSON path like ``inputs[0].data``), or None.

    Iterative, and it looks at each element of a list only when the list holds a container (``map(type)``
    runs in C), so the tensor data that makes up most of a body costs a few percent of parsing it."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "the body")]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            return path
        if isinstance(node, dict):
            stack.extend((v, depth + 1, _member(path, k)) for k, v in node.items() if isinstance(v, list | dict))
        elif isinstance(node, list) and not _CONTAINERS.isdisjoint(set(map(type, node))):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(node) if isinstance(v, list | dict))
    return None


_CONTAINERS = frozenset({list, dict})


def _member(path: str, key: str) -> str:
    # Keys are client data: quote only short plain ones, so a message never carries a long or odd string.
    name = key if len(key) <= 32 and key.isidentifier() else "..."
    return name if path == "the body" else f"{path}.{name}"


def parse_infer_request(doc: Any) -> InferenceRequest:
    """Validate an inference request body (already decoded from JSON) on its own terms."""
    if not isinstance(doc, dict):
        raise ProtocolError(f"request body must be a JSON object, not {_json_type(doc)}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"field 'id' must be a string, not {_json_type(request_id)}")
    parameters = _parameters(doc.get("parameters"), "field 'parameters'")

    raw_inputs = doc.get("inputs")
    if raw_inputs is None:
        raise ProtocolError("field 'inputs' is missing; expected a non-empty list of input tensors")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("field 'inputs' must be a non-empty list of input tensors")
    inputs = tuple(_parse_input(i, raw) for i, raw in enumerate(raw_inputs))
    seen: set[str] = set()
    for tensor in inputs:
        if tensor.name in seen:
            raise ProtocolError(f"input '{tensor.name}' appears more than once in 'inputs'")
        seen.add(tensor.name)

    return InferenceRequest(request_id, parameters, inputs, _parse_outputs(doc.get("outputs")))


def _parse_input(index: int, raw: Any) -> Tensor:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where} must be an object, not {_json_type(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}: field 'name' must be a non-empty string")
    where = f"input '{name}'"

    for required in ("shape", "datatype", "data"):
        if required not in raw:
            raise ProtocolError(f"{where}: field '{required}' is missing")

    shape = raw["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ProtocolError(f"{where}: field 'shape' must be a list of non-negative integers, got {shape!r}")
    if len(shape) > _MAX_RANK:
        raise ProtocolError(f"{where}: field 'shape' has {len(shape)} dimensions; at most {_MAX_RANK}")

    datatype = raw["datatype"]
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(
            f"{where}: field 'datatype' {datatype!r} is not a known datatype (one of {', '.join(sorted(DATATYPES))})"
        )

    data = raw["data"]
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: field 'data' must be a list, not {_json_type(data)}")
    flat = _flatten(data, where)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise ProtocolError(
            f"{where}: field 'shape' {shape} holds {expected} elements but field 'data' has {len(flat)}"
        )
    _check_elements(flat, datatype, where)
    parameters = _parameters(raw.get("parameters"), f"{where}: field 'parameters'")
    return Tensor(name, datatype, tuple(shape), flat, parameters)


def _flatten(data: list[Any], where: str) -> list[Any]:
    """OIP allows data flat or nested in row-major order; models always get it flat."""
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    # Iterative, so a hostile nesting depth cannot exhaust the interpreter's stack.
    iterators = [iter(data)]
    while iterators:
        item = next(iterators[-1], _END)
        if item is _END:
            iterators.pop()
        elif isinstance(item, list):
            if len(iterators) >= _MAX_RANK:
                raise ProtocolError(f"{where}: field 'data' is nested deeper than {_MAX_RANK} levels")
            iterators.append(iter(item))
        else:
            flat.append(item)
    return flat


_END = object()
_EXPECTED_ELEMENTS = {"BYTES": "strings", "BOOL": "booleans", **dict.fromkeys(_FLOAT_TYPES, "numbers")}


def _check_elements(flat: Sequence[Any], datatype: str, where: str) -> None:
    for i, value in enumerate(flat):
        if not _element_ok(value, datatype):
            if datatype in _INT_RANGES:
                low, high = _INT_RANGES[datatype]
                expected = f"integers in [{low}, {high}]"
            else:
                expected = _EXPECTED_ELEMENTS[datatype]
            raise ProtocolError(
                f"{where}: field 'data' must hold {expected} for datatype {datatype}; "
                f"element {i} is {_json_type(value)}"
            )


def _element_ok(value: Any, datatype: str) -> bool:
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype in _FLOAT_TYPES:
        return isinstance(value, int | float) and not isinstance(value, bool)
    low, high = _INT_RANGES[datatype]
    return _is_int(value) and low <= value <= high


def _parse_outputs(raw: Any) -> tuple[RequestedOutput, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProtocolError(f"field 'outputs' must be a list, not {_json_type(raw)}")
    outputs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ProtocolError(f"outputs[{i}] must be an object with a non-empty string 'name'")
        outputs.append(RequestedOutput(item["name"], _parameters(item.get("parameters"), f"outputs[{i}]")))
    return tuple(outputs)


def _parameters(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where} must be an object, not {_json_type(raw)}")
    return raw


def check_against_model(request: InferenceRequest, model: Model) -> None:
    """Hold the request to the model's declared inputs and outputs."""
    specs = {spec.name: spec for spec in model.inputs}
    given = request.input_map()
    for name in given:
        if name not in specs:
            raise ProtocolError(
                f"input '{name}' is not an input of model '{model.name}' (inputs: {', '.join(sorted(specs))})"
            )
    for spec in model.inputs:
        tensor = given.get(spec.name)
        if tensor is None:
            raise ProtocolError(f"input '{spec.name}' is missing (model '{model.name}' requires it)")
        _check_tensor(tensor, spec)
    if request.outputs is not None:
        known = {spec.name for spec in model.outputs}
        for output in request.outputs:
            if output.name not in known:
                raise ProtocolError(
                    f"output '{output.name}' is not an output of model '{model.name}' "
                    f"(outputs: {', '.join(sorted(known))})"
                )


def _check_tensor(tensor: Tensor, spec: TensorSpec) -> None:
    where = f"input '{tensor.name}'"
    if tensor.datatype != spec.datatype:
        raise ProtocolError(f"{where}: field 'datatype' must be {spec.datatype}, got {tensor.datatype}")
    if len(tensor.shape) != len(spec.shape) or any(
        want != ANY_DIM and got != want for got, want in zip(tensor.shape, spec.shape, strict=True)
    ):
        raise ProtocolError(f"{where}: field 'shape' {list(tensor.shape)} does not fit {_shape_text(spec)}")


def check_limits(request: InferenceRequest, model: Model, limits: RequestLimits) -> None:
    """Hold the request to the rows and bytes the model takes per request (RequestTooLargeError, a 413).

    Runs before the request is redacted or queued, so a request too large costs neither."""
    for tensor in request.inputs:
        rows = tensor.shape[0] if tensor.shape else 1
        if rows > limits.max_rows:
            raise RequestTooLargeError(
                f"input '{tensor.name}' has {rows} rows; model '{model.name}' accepts at most "
                f"{limits.max_rows} rows per request (split it into several requests)"
            )
    if limits.max_bytes is not None:
        size = sum(tensor_bytes(tensor) for tensor in request.inputs)
        if size > limits.max_bytes:
            raise RequestTooLargeError(
                f"inputs hold {size} bytes of data; model '{model.name}' accepts at most "
                f"{limits.max_bytes} bytes per request (split it into several requests)"
            )


def tensor_bytes(tensor: Tensor) -> int:
    """The tensor's data size as the model holds it: UTF-8 bytes of text, else element size times count."""
    if tensor.datatype == "BYTES":
        return sum(len(item.encode("utf-8", "surrogatepass")) for item in tensor.data)
    return _ELEMENT_BYTES[tensor.datatype] * len(tensor.data)


def _shape_text(spec: TensorSpec) -> str:
    return "[" + ", ".join("n" if d == ANY_DIM else str(d) for d in spec.shape) + "]"


def build_infer_response(
    model: Model,
    request_id: str,
    outputs: Iterable[Tensor],
    requested: tuple[RequestedOutput, ...] | None,
) -> dict[str, Any]:
    """The OIP response body; with ``requested``, only those outputs, in the order asked."""
    produced = list(outputs)
    if requested is not None:
        by_name = {tensor.name: tensor for tensor in produced}
        produced = [by_name[output.name] for output in requested]
    return {
        "model_name": model.name,
        "model_version": model.version,
        "id": request_id,
        "outputs": [tensor.to_json() for tensor in produced],
    }


def model_metadata(model: Model, versions: Sequence[str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": list(versions),
        "platform": model.platform,
        "inputs": [spec.to_json() for spec in model.inputs],
        "outputs": [spec.to_json() for spec in model.outputs],
    }


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
    return type(value).__name__
