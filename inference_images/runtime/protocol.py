"""Open Inference Protocol (KServe v2) REST shapes: parse and validate requests, build responses.

Everything a client can get wrong is caught here and reported as a ``ProtocolError`` whose message names
the input and the field, so the server answers 400 ``{"error": message, "code": 400}`` (the OIP error
format, with the status).
Validation runs in two steps: the request on its own (``parse_infer_request``), then against the model's
declared tensors (``check_against_model``), so a model's ``predict`` only ever sees inputs it declared.

Triton's binary tensor data extension, which tritonclient uses by default, is read and written here too: a
request whose ``Inference-Header-Content-Length`` is N has N bytes of JSON, then each binary input's bytes
in input order (``parameters.binary_data_size`` long; BYTES elements each behind a 4-byte little-endian
length). Binary inputs decode into the same flat lists JSON ones do, so nothing past this module can tell
them apart: limits, PII redaction and models see one kind of tensor.
"""

from __future__ import annotations

import json
import math
import operator
import re
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, count
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
# The largest finite magnitude of each float type: a number past it (``1e39`` as FP32, ``1e999`` in any)
# would become infinity in the model's tensor, which the protocol's JSON cannot carry back.
_FLOAT_MAX = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": sys.float_info.max}
DATATYPES = frozenset({"BOOL", "BYTES", *_INT_RANGES, *_FLOAT_TYPES})
# Nested data deeper than this is not a tensor anyone sends; the bound keeps flattening cheap and safe.
_MAX_RANK = 16
# Arrays and objects in a request body nest at most this deep: a request object, its inputs, a tensor, and
# its data at _MAX_RANK, with room for parameters. Deeper bodies are refused before anything walks them.
MAX_JSON_DEPTH = 32
_ELEMENT_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2,
                  "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}  # fmt: skip
# struct codes of the fixed-size datatypes: binary tensors are little-endian whatever the host is.
_STRUCT_CODES = {"BOOL": "?", "UINT8": "B", "INT8": "b", "UINT16": "H", "INT16": "h", "FP16": "e",
                 "UINT32": "I", "INT32": "i", "FP32": "f", "UINT64": "Q", "INT64": "q", "FP64": "d"}  # fmt: skip

# Triton's binary tensor data extension: the request or response header that says how many bytes of the
# body are JSON (the rest is binary tensor data), and the name the server metadata lists it under.
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
_BINARY_SIZE = "binary_data_size"


class ProtocolError(ValueError):
    """A request that breaks the protocol or the model's contract. ``str()`` is the client-facing reason."""


class NonFiniteOutputError(ValueError):
    """A model output holding NaN or infinity, asked for as JSON, which has no such numbers (a 500: the
    model's, not the request's; binary outputs carry them as they are)."""


class RequestTooLargeError(ProtocolError):
    """A well-formed request larger than the model takes per request (answered 413, naming the limit)."""


@dataclass(frozen=True, slots=True)
class SizeLimit:
    """The model a request is for and what it takes per request, when known before the body is parsed:
    then a request too large is refused from its tensors' ``shape`` and ``datatype`` alone, before any of
    its ``data`` is looked at, so an oversized body costs its JSON decode and nothing else."""

    model: str
    limits: RequestLimits


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


def parse_request_body(body: bytes, header_length: str | None, max_depth: int = MAX_JSON_DEPTH,
                       size_limit: SizeLimit | None = None) -> InferenceRequest:
    """An inference request from its HTTP body: all JSON, or (with ``header_length``, the value of
    ``Inference-Header-Content-Length``) that many bytes of JSON followed by binary tensor data.
    ``size_limit``: see ``SizeLimit``."""
    if header_length is None:
        try:
            return parse_infer_request(decode_json(body, max_depth), size_limit=size_limit)
        except ProtocolError as exc:
            if b'"binary_data_size"' in body and "not valid JSON" in str(exc):
                # Binary tensors sent without the header (or a proxy dropped it): say so, not only "bad JSON".
                raise ProtocolError(
                    f"{exc} (inputs with parameters.{_BINARY_SIZE} need the {HEADER_LENGTH_HEADER} header "
                    "saying where the JSON part ends)"
                ) from None
            raise
    text = header_length.strip()
    # ASCII only: str.isdigit and int() also take other scripts' digits ("\u0661" is 1).
    if not (text.isascii() and text.isdigit()):
        raise ProtocolError(f"header {HEADER_LENGTH_HEADER} must be a byte count, got {header_length[:32]!r}")
    length = int(text)
    if length > len(body):
        raise ProtocolError(
            f"header {HEADER_LENGTH_HEADER} says the JSON part is {length} bytes but the body has only {len(body)}"
        )
    view = memoryview(body)
    return parse_infer_request(decode_json(bytes(view[:length]), max_depth), binary=view[length:],
                               size_limit=size_limit)


class _BinaryData:
    """The binary part of a request body, handed out in input order."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._offset = 0

    @property
    def left(self) -> int:
        return len(self._data) - self._offset

    def take(self, size: int, where: str) -> memoryview:
        if size > self.left:
            raise ProtocolError(
                f"{where}: parameters.{_BINARY_SIZE} is {size} but only {self.left} bytes of binary data are "
                f"left in the body (after the JSON part and the inputs before this one)"
            )
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk


def parse_infer_request(doc: Any, binary: memoryview | None = None,
                        size_limit: SizeLimit | None = None) -> InferenceRequest:
    """Validate an inference request body (already decoded from JSON) on its own terms; ``binary`` is what
    followed the JSON part in the body (the binary tensor data extension), None when there was none;
    ``size_limit``: see ``SizeLimit``."""
    if not isinstance(doc, dict):
        raise ProtocolError(f"request body must be a JSON object, not {_json_type(doc)}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"field 'id' must be a string, not {_json_type(request_id)}")
    parameters = _parameters(doc.get("parameters"), "field 'parameters'")
    output_default = parameters.get("binary_data_output", False)
    if not isinstance(output_default, bool):
        raise ProtocolError(
            f"field 'parameters': binary_data_output must be a boolean, not {_json_type(output_default)}"
        )

    raw_inputs = doc.get("inputs")
    if raw_inputs is None:
        raise ProtocolError("field 'inputs' is missing; expected a non-empty list of input tensors")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("field 'inputs' must be a non-empty list of input tensors")
    data = _BinaryData(binary) if binary is not None else None
    headers = [_parse_input_header(i, raw, data is not None) for i, raw in enumerate(raw_inputs)]
    if size_limit is not None:
        _check_declared_size(headers, size_limit)
    inputs = tuple(_parse_input_data(header, data) for header in headers)
    if data is not None and data.left:
        raise ProtocolError(
            f"the body has {data.left} bytes after the JSON part that no input's parameters.{_BINARY_SIZE} "
            f"accounts for (header {HEADER_LENGTH_HEADER} or the sizes are wrong)"
        )
    seen: set[str] = set()
    for tensor in inputs:
        if tensor.name in seen:
            raise ProtocolError(f"input '{tensor.name}' appears more than once in 'inputs'")
        seen.add(tensor.name)

    return InferenceRequest(request_id, parameters, inputs, _parse_outputs(doc.get("outputs")))


@dataclass(frozen=True, slots=True)
class _InputHeader:
    """An input's fields other than its data, validated: what its size follows from."""

    raw: dict[str, Any]
    name: str
    where: str
    shape: list[int]
    datatype: str
    parameters: Mapping[str, Any]
    binary_size: int | None


def _parse_input_header(index: int, raw: Any, has_binary: bool) -> _InputHeader:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where} must be an object, not {_json_type(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}: field 'name' must be a non-empty string")
    where = f"input '{name}'"
    parameters = _parameters(raw.get("parameters"), f"{where}: field 'parameters'")
    binary_size = _binary_size(parameters, where)

    for required in ("shape", "datatype") if binary_size is not None else ("shape", "datatype", "data"):
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
    if binary_size is not None:
        if "data" in raw:
            raise ProtocolError(f"{where}: has both field 'data' and parameters.{_BINARY_SIZE}; send one")
        if not has_binary:
            raise ProtocolError(
                f"{where}: parameters.{_BINARY_SIZE} is set but the request has no {HEADER_LENGTH_HEADER} "
                "header saying where its binary data starts"
            )
    return _InputHeader(raw, name, where, shape, datatype, parameters, binary_size)


def _check_declared_size(headers: Sequence[_InputHeader], size_limit: SizeLimit) -> None:
    """The rows every input declares, and the bytes that follow from the shapes of fixed-size inputs and
    from the binary sizes of binary text inputs, against the model's limits (text sent as JSON is counted
    by ``check_limits`` once parsed)."""
    for header in headers:
        _check_rows(header.name, header.shape[0] if header.shape else 1, size_limit.model, size_limit.limits)
    if size_limit.limits.max_bytes is None:
        return
    size = 0
    for header in headers:
        if header.datatype != "BYTES":
            size += _ELEMENT_BYTES[header.datatype] * math.prod(header.shape)
        elif header.binary_size is not None:
            size += max(0, header.binary_size - 4 * math.prod(header.shape))  # each element's length prefix
    _check_bytes(size, size_limit.model, size_limit.limits)


def _parse_input_data(header: _InputHeader, binary: _BinaryData | None) -> Tensor:
    name, where, shape, datatype = header.name, header.where, header.shape, header.datatype
    expected = math.prod(shape)
    if header.binary_size is not None:
        assert binary is not None  # the header's check
        chunk = binary.take(header.binary_size, where)
        flat = _decode_binary(chunk, datatype, shape, expected, where)
        return Tensor(name, datatype, tuple(shape), flat, header.parameters)

    data = header.raw["data"]
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: field 'data' must be a list, not {_json_type(data)}")
    flat = _flatten(data, where)
    if len(flat) != expected:
        raise ProtocolError(
            f"{where}: field 'shape' {shape} holds {expected} elements but field 'data' has {len(flat)}"
        )
    _check_elements(flat, datatype, where)
    return Tensor(name, datatype, tuple(shape), flat, header.parameters)


def _binary_size(parameters: Mapping[str, Any], where: str) -> int | None:
    size = parameters.get(_BINARY_SIZE)
    if size is not None and not (_is_int(size) and size >= 0):
        raise ProtocolError(f"{where}: parameters.{_BINARY_SIZE} must be a non-negative integer, got {size!r}")
    return size


def _decode_binary(chunk: memoryview, datatype: str, shape: list[int], count: int, where: str) -> list[Any]:
    """One input's binary data as the flat list a JSON ``data`` would have given."""
    if datatype == "BYTES":
        return _decode_strings(chunk, shape, count, where)
    size = _ELEMENT_BYTES[datatype]
    if len(chunk) != count * size:
        raise ProtocolError(
            f"{where}: field 'shape' {shape} holds {count} {datatype} elements ({count * size} bytes) but "
            f"parameters.{_BINARY_SIZE} is {len(chunk)}"
        )
    flat = list(struct.unpack(f"<{count}{_STRUCT_CODES[datatype]}", chunk))
    if datatype in _FLOAT_TYPES and flat:
        _check_finite(flat, datatype, f"{where}: element {{}} of its binary data")
    return flat


def _decode_strings(chunk: memoryview, shape: list[int], count: int, where: str) -> list[Any]:
    """BYTES elements, each a 4-byte little-endian length and that many bytes, as text: every BYTES tensor
    here is text (what PII redaction scans and the text models read), so each must be UTF-8."""
    texts: list[str] = []
    offset, end = 0, len(chunk)
    while offset < end:
        i = len(texts)
        if i == count:
            raise ProtocolError(
                f"{where}: field 'shape' {shape} holds {count} elements but its binary BYTES data has "
                f"{end - offset} bytes left after element {count - 1}"
            )
        if end - offset < 4:
            raise ProtocolError(f"{where}: element {i} of its binary BYTES data is cut off in its 4-byte length")
        (length,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if length > end - offset:
            raise ProtocolError(
                f"{where}: element {i} of its binary BYTES data says {length} bytes but only {end - offset} "
                f"are left in its parameters.{_BINARY_SIZE}"
            )
        try:
            texts.append(str(chunk[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(f"{where}: element {i} of its binary BYTES data is not UTF-8 text") from None
        offset += length
    if len(texts) != count:
        raise ProtocolError(
            f"{where}: field 'shape' {shape} holds {count} elements but its binary BYTES data has {len(texts)}"
        )
    return texts


def _flatten(data: list[Any], where: str) -> list[Any]:
    """OIP allows data flat or nested in row-major order; models always get it flat.

    A level of lists only is flattened in C (``chain``), one level at a time: what every client sends.
    Lists beside scalars (ragged data, which the element count then refuses) take the general walk."""
    level = data
    for depth in range(1, _MAX_RANK + 1):
        types = set(map(type, level))
        if list not in types:
            return level
        if len(types) > 1:
            return _flatten_ragged(data, where)
        if depth == _MAX_RANK:
            break
        level = list(chain.from_iterable(level))
    raise ProtocolError(f"{where}: field 'data' is nested deeper than {_MAX_RANK} levels")


def _flatten_ragged(data: list[Any], where: str) -> list[Any]:
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


# The Python types a JSON or binary element of each datatype may be (exact types: a bool is no number).
_ELEMENT_TYPES: dict[str, frozenset[type]] = {
    "BYTES": frozenset({str}), "BOOL": frozenset({bool}),
    **dict.fromkeys(_FLOAT_TYPES, frozenset({int, float})), **dict.fromkeys(_INT_RANGES, frozenset({int})),
}  # fmt: skip


def _check_elements(flat: Sequence[Any], datatype: str, where: str) -> None:
    """Every element of the right kind for ``datatype``. A tensor may hold millions of elements, so each
    check is one pass in C (``map`` over a builtin), and the element to name is looked for only once one
    is known to be wrong."""
    allowed = _ELEMENT_TYPES[datatype]
    if not allowed.issuperset(map(type, flat)):
        _refuse_element(flat, list(map(allowed.__contains__, map(type, flat))).index(False), datatype, where)
    if datatype == "BYTES":
        # JSON may escape half of a UTF-16 pair ("\ud800"), which no model, tokenizer or PII detector can
        # take as text: the client's error, as invalid UTF-8 in binary data is.
        joined = "".join(flat)
        if joined.isascii() or _encodes(joined):
            return
        for i in compress(count(), map(operator.not_, map(str.isascii, flat))):
            if not _encodes(flat[i]):
                raise ProtocolError(f"{where}: element {i} of field 'data' is not valid Unicode text "
                                    "(a lone UTF-16 surrogate, such as \\ud800 without its pair)")
    elif datatype in _FLOAT_TYPES and flat:
        _check_finite(flat, datatype, f"{where}: element {{}} of field 'data'")
    elif datatype in _INT_RANGES and flat:
        low, high = _INT_RANGES[datatype]
        if min(flat) < low or max(flat) > high:
            in_range = map(operator.and_, map(low.__le__, flat), map(high.__ge__, flat))
            _refuse_element(flat, list(in_range).index(False), datatype, where)


def _check_finite(flat: Sequence[Any], datatype: str, element: str) -> None:
    """Every number finite and within ``datatype``'s range (``element``: how to name element i)."""
    bound = _FLOAT_MAX[datatype]
    # abs(NaN) compares false with anything, so this one pass refuses NaN, infinities and the too large.
    if all(map(bound.__ge__, map(abs, flat))):
        return
    i = list(map(bound.__ge__, map(abs, flat))).index(False)
    value = flat[i]
    if isinstance(value, float) and math.isnan(value):
        what = "NaN"
    elif isinstance(value, float) and math.isinf(value):
        what = "infinite (a number too large for any float, such as 1e999, or an infinity)"
    else:
        if isinstance(value, float) or value.bit_length() <= 64:
            what = f"{value:.6g}" if isinstance(value, float) else str(value)
        else:
            what = f"an integer of {len(str(abs(value)))} digits"
        what += f", beyond {datatype}'s largest magnitude {bound:.8g}"
    raise ProtocolError(f"{element.format(i)} is {what}; {datatype} data must be finite numbers")


def _refuse_element(flat: Sequence[Any], i: int, datatype: str, where: str) -> None:
    if datatype in _INT_RANGES:
        low, high = _INT_RANGES[datatype]
        expected = f"integers in [{low}, {high}]"
    else:
        expected = _EXPECTED_ELEMENTS[datatype]
    raise ProtocolError(
        f"{where}: field 'data' must hold {expected} for datatype {datatype}; element {i} is {_json_type(flat[i])}"
    )


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_outputs(raw: Any) -> tuple[RequestedOutput, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProtocolError(f"field 'outputs' must be a list, not {_json_type(raw)}")
    outputs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ProtocolError(f"outputs[{i}] must be an object with a non-empty string 'name'")
        parameters = _parameters(item.get("parameters"), f"outputs[{i}]")
        binary = parameters.get("binary_data", False)
        if not isinstance(binary, bool):
            raise ProtocolError(f"outputs[{i}]: parameters.binary_data must be a boolean, not {_json_type(binary)}")
        if parameters.get("classification"):
            raise ProtocolError(f"outputs[{i}]: parameters.classification is not supported (no classification)")
        outputs.append(RequestedOutput(item["name"], parameters))
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

    Runs before the request is redacted or queued, so a request too large costs neither (and, where the
    model is known before the body is parsed, ``SizeLimit`` refuses most of them before that)."""
    for tensor in request.inputs:
        _check_rows(tensor.name, tensor.shape[0] if tensor.shape else 1, model.name, limits)
    if limits.max_bytes is not None:
        _check_bytes(sum(tensor_bytes(tensor) for tensor in request.inputs), model.name, limits)


def _check_rows(name: str, rows: int, model: str, limits: RequestLimits) -> None:
    if rows > limits.max_rows:
        raise RequestTooLargeError(
            f"input '{name}' has {rows} rows; model '{model}' accepts at most "
            f"{limits.max_rows} rows per request (split it into several requests)"
        )


def _check_bytes(size: int, model: str, limits: RequestLimits) -> None:
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise RequestTooLargeError(
            f"inputs hold {size} bytes of data; model '{model}' accepts at most "
            f"{limits.max_bytes} bytes per request (split it into several requests)"
        )


def tensor_bytes(tensor: Tensor) -> int:
    """The tensor's data size as the model holds it: UTF-8 bytes of text, else element size times count."""
    if tensor.datatype == "BYTES":
        joined = "".join(tensor.data)  # one encode in C, not one per element
        return len(joined) if joined.isascii() else len(joined.encode("utf-8", "surrogatepass"))
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


def binary_outputs(request: InferenceRequest, names: Iterable[str]) -> frozenset[str]:
    """Which of the response's outputs (``names``) go as binary data: those whose requested output says
    ``binary_data``, else as the request's ``binary_data_output`` says (tritonclient asks for binary both
    ways by default)."""
    default = bool(request.parameters.get("binary_data_output", False))
    if request.outputs is None:
        return frozenset(names) if default else frozenset()
    return frozenset(o.name for o in request.outputs if o.parameters.get("binary_data", default))


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response body; ``header_length`` is the JSON part's size when binary data follows it, else None."""

    body: bytes
    content_type: str
    header_length: int | None


def encode_infer_response(response: Mapping[str, Any], binary: frozenset[str]) -> EncodedResponse:
    """The body of ``response`` (``build_infer_response``'s), the outputs named in ``binary`` as binary
    tensor data after the JSON part, each with its ``parameters.binary_data_size``, in output order."""
    for output in response["outputs"]:
        if output["name"] not in binary and output["datatype"] in _FLOAT_TYPES:
            _check_finite_output(response, output)
    # allow_nan=False: never the non-JSON tokens NaN or Infinity, whatever reached this far.
    if not binary:
        return EncodedResponse(json.dumps(response, allow_nan=False).encode(), "application/json", None)
    chunks: list[bytes] = []
    outputs = []
    for output in response["outputs"]:
        if output["name"] not in binary:
            outputs.append(output)
            continue
        chunk = _encode_binary(output["datatype"], output["data"])
        chunks.append(chunk)
        parameters = {**output.get("parameters", {}), _BINARY_SIZE: len(chunk)}
        outputs.append({k: v for k, v in output.items() if k != "data"} | {"parameters": parameters})
    header = json.dumps({**response, "outputs": outputs}, allow_nan=False).encode()
    return EncodedResponse(header + b"".join(chunks), BINARY_CONTENT_TYPE, len(header))


def _check_finite_output(response: Mapping[str, Any], output: Mapping[str, Any]) -> None:
    data = output["data"]
    if all(map(math.isfinite, data)):
        return
    i = list(map(math.isfinite, data)).index(False)
    raise NonFiniteOutputError(
        f"model '{response['model_name']}' version '{response['model_version']}' produced "
        f"{'NaN' if math.isnan(data[i]) else 'an infinity'} in output '{output['name']}' (element {i}), which "
        "JSON cannot carry; ask for that output as binary data (parameters.binary_data) to receive it as is"
    )


def _encode_binary(datatype: str, data: Sequence[Any]) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in data:
            raw = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
            parts += (struct.pack("<I", len(raw)), raw)
        return b"".join(parts)
    return struct.pack(f"<{len(data)}{_STRUCT_CODES[datatype]}", *data)


def model_metadata(model: Model, versions: Sequence[str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": list(versions),
        "platform": model.platform,
        "inputs": [spec.to_json() for spec in model.inputs],
        "outputs": [spec.to_json() for spec in model.outputs],
    }


def error_body(message: str, status: int) -> dict[str, str | int]:
    """The Open Inference Protocol's error (`error`), with the status beside it: the shape of the gateway's
    own refusals too (xds_server/compiler/listener.py), so a client reads one shape whoever answered."""
    return {"error": message, "code": status}


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
