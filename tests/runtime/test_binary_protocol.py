"""Triton's binary tensor data extension on its own: what tritonclient writes parses into the same tensors
JSON gives, what the runtime writes tritonclient reads back exactly, and every malformed binary body is a
ProtocolError naming the input and what does not add up. The wire format comes from tritonclient itself
(``generate_request_body``, ``parse_response_body``), not from a copy of it."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.protocol import (
    HEADER_LENGTH_HEADER,
    ProtocolError,
    binary_outputs,
    encode_infer_response,
    parse_infer_request,
    parse_request_body,
)

TRITON = httpclient.InferenceServerClient


def triton_body(
    *inputs: httpclient.InferInput, outputs: list[httpclient.InferRequestedOutput] | None = None
) -> tuple[bytes, str | None]:
    body, json_size = TRITON.generate_request_body(list(inputs), outputs=outputs)
    return body, None if json_size is None else str(json_size)


def infer_input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    return tensor.set_data_from_numpy(array, binary_data=binary)


@pytest.mark.parametrize(
    ("datatype", "array"),
    [
        ("FP32", np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)),
        ("FP64", np.array([[1e-300, -2.5]], dtype=np.float64)),
        ("FP16", np.array([0.5, -1.25, 65504.0], dtype=np.float16)),
        ("INT64", np.array([[-(2**63), 2**63 - 1]], dtype=np.int64)),
        ("INT32", np.array([1, -2, 3], dtype=np.int32)),
        ("UINT8", np.array([[0, 255], [7, 8]], dtype=np.uint8)),
        ("INT8", np.array([-128, 127], dtype=np.int8)),
        ("UINT64", np.array([2**64 - 1], dtype=np.uint64)),
        ("BOOL", np.array([True, False, True])),
    ],
)
def test_tritonclient_binary_inputs_parse_to_what_json_gives(datatype: str, array: np.ndarray) -> None:
    binary = parse_request_body(*triton_body(infer_input("x", array, datatype)))
    plain = parse_request_body(*triton_body(infer_input("x", array, datatype, binary=False)))
    (got,), (want,) = binary.inputs, plain.inputs
    assert (got.name, got.datatype, got.shape) == ("x", datatype, array.shape)
    assert got.data == want.data == array.ravel().tolist()


def test_bytes_elements_decode_to_text_with_their_length_prefixes() -> None:
    texts = np.array(["refund my invoice", "", "naïve café ☕", "x" * 300], dtype=np.object_)
    request = parse_request_body(*triton_body(infer_input("text", texts, "BYTES")))
    assert request.inputs[0].data == list(texts)
    assert request.inputs[0].shape == (4,)


def test_binary_and_json_inputs_mix_in_input_order() -> None:
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    request = parse_request_body(
        *triton_body(
            infer_input("a", np.array([1.5, 2.5], dtype=np.float32), "FP32"),
            infer_input("b", np.array(["hi", "there"], dtype=np.object_), "BYTES", binary=False),
            infer_input("c", ids, "INT64"),
        )
    )
    assert [t.data for t in request.inputs] == [[1.5, 2.5], ["hi", "there"], ids.ravel().tolist()]


def test_a_header_length_with_an_all_json_body_is_plain_json() -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [4]}]}).encode()
    assert parse_request_body(body, str(len(body))).inputs[0].data == [4]


def manual(
    inputs: list[dict[str, Any]],
    tail: bytes,
    parameters: dict[str, Any] | None = None,
    header_length: int | None = None,
) -> tuple[bytes, str]:
    doc: dict[str, Any] = {"inputs": inputs}
    if parameters is not None:
        doc["parameters"] = parameters
    head = json.dumps(doc).encode()
    return head + tail, str(len(head) if header_length is None else header_length)


def fp32(name: str, shape: list[int], size: int) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": size}}


def text(name: str, shape: list[int], size: int) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": size}}


def element(raw: bytes) -> bytes:
    return struct.pack("<I", len(raw)) + raw


FOUR_FLOATS = struct.pack("<4f", 1, 2, 3, 4)


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (
            *manual([fp32("x", [4], 16)], FOUR_FLOATS, header_length=10_000),
            "header Inference-Header-Content-Length says the JSON part is 10000 bytes but the body has only",
        ),
        (
            *manual([fp32("x", [4], 16)], FOUR_FLOATS, header_length=-1),
            "header Inference-Header-Content-Length must be a byte count, got '-1'",
        ),
        (
            manual([fp32("x", [4], 16)], FOUR_FLOATS)[0],
            "twelve",
            "header Inference-Header-Content-Length must be a byte count",
        ),
        (
            manual([fp32("x", [4], 16)], FOUR_FLOATS)[0],
            "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit and int(), not a byte count
            "header Inference-Header-Content-Length must be a byte count, got '\u0661'",
        ),
        (
            *manual([fp32("x", [4], 16)], FOUR_FLOATS + b"\0\0\0\0"),
            "the body has 4 bytes after the JSON part that no input's parameters.binary_data_size accounts for",
        ),
        (
            *manual([fp32("x", [4], 16), fp32("y", [2], 8)], FOUR_FLOATS + b"\0\0\0\0"),
            "input 'y': parameters.binary_data_size is 8 but only 4 bytes of binary data are left in the body",
        ),
        (
            *manual([fp32("x", [5], 16)], FOUR_FLOATS),
            "input 'x': field 'shape' [5] holds 5 FP32 elements (20 bytes) but parameters.binary_data_size is 16",
        ),
        (
            *manual([fp32("x", [4], -16)], FOUR_FLOATS),
            "input 'x': parameters.binary_data_size must be a non-negative integer, got -16",
        ),
        (
            *manual([{**fp32("x", [4], 16), "data": [1, 2, 3, 4]}], FOUR_FLOATS),
            "input 'x': has both field 'data' and parameters.binary_data_size; send one",
        ),
        (
            *manual([text("t", [1], 7)], element(b"hello")[:-1] + b"!!"),  # 5 declared, 4 + 3 present
            "input 't': element 0 of its binary BYTES data says 5 bytes but only 3 are left",
        ),
        (
            *manual([text("t", [2], 11)], element(b"hello") + b"\1\0"),
            "input 't': element 1 of its binary BYTES data is cut off in its 4-byte length",
        ),
        (
            *manual([text("t", [3], 18)], element(b"hello") + element(b"world")),
            "input 't': field 'shape' [3] holds 3 elements but its binary BYTES data has 2",
        ),
        (
            *manual([text("t", [1], 18)], element(b"hello") + element(b"world")),
            "input 't': field 'shape' [1] holds 1 elements but its binary BYTES data has 9 bytes left",
        ),
        (
            *manual([text("t", [1], 6)], element(b"\xff\xfe")),
            "input 't': element 0 of its binary BYTES data is not UTF-8 text",
        ),
        (
            *manual([fp32("x", [4], 16)], FOUR_FLOATS, parameters={"binary_data_output": "yes"}),
            "field 'parameters': binary_data_output must be a boolean, not a string",
        ),
    ],
    ids=[
        "header-past-body",
        "header-negative",
        "header-not-a-number",
        "header-other-digits",
        "bytes-left-over",
        "size-past-end",
        "size-not-shape",
        "size-negative",
        "data-and-size",
        "element-past-size",
        "length-cut-off",
        "too-few-elements",
        "too-many-elements",
        "not-utf8",
        "binary-output-not-bool",
    ],
)
def test_a_malformed_binary_body_is_refused_naming_what_does_not_add_up(body: bytes, header: str, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request_body(body, header)
    assert message in str(caught.value)


def test_binary_data_size_without_the_header_is_refused() -> None:
    body, header = manual([fp32("x", [4], 16)], FOUR_FLOATS)
    with pytest.raises(ProtocolError, match=f"need the {HEADER_LENGTH_HEADER} header saying where the JSON part ends"):
        parse_request_body(body, None)
    # The JSON part alone parses, and the input says what is missing.
    with pytest.raises(
        ProtocolError,
        match=f"input 'x': parameters.binary_data_size is set but the request has no {HEADER_LENGTH_HEADER} header",
    ):
        parse_request_body(body[: int(header)], None)


def test_the_json_part_keeps_the_depth_limit() -> None:
    deep = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"p": ' + b"[" * 200
    with pytest.raises(ProtocolError, match="nests arrays and objects more than 32 levels deep"):
        parse_request_body(deep + b"]" * 200 + b"}}]}" + FOUR_FLOATS, str(len(deep) + 204))


def test_classification_is_refused_rather_than_answered_as_raw_scores() -> None:
    body, header = triton_body(
        infer_input("x", np.ones(2, dtype=np.float32), "FP32"),
        outputs=[httpclient.InferRequestedOutput("y", class_count=2)],
    )
    with pytest.raises(ProtocolError, match=r"outputs\[0\]: parameters.classification is not supported"):
        parse_request_body(body, header)


OUTPUTS = [
    Tensor("label", "BYTES", (3,), ["billing", "", "naïve ☕"]),
    Tensor("probabilities", "FP32", (3, 2), [0.25, 0.75, 0.5, 0.5, 1.0, 0.0]),
    Tensor("index", "INT64", (3,), [1, 0, -(2**63)]),
]
RESPONSE = {"model_name": "m", "model_version": "1", "id": "r", "outputs": [t.to_json() for t in OUTPUTS]}


@pytest.mark.parametrize("binary", [{"label", "probabilities", "index"}, {"probabilities"}, set()])
def test_tritonclient_reads_back_exactly_what_the_model_produced(binary: set[str]) -> None:
    encoded = encode_infer_response(RESPONSE, frozenset(binary))
    assert (encoded.header_length is None) == (not binary)
    result = TRITON.parse_response_body(encoded.body, header_length=encoded.header_length)
    # tritonclient hands binary BYTES back as bytes, JSON ones as str.
    labels = [s.encode() for s in OUTPUTS[0].data] if "label" in binary else OUTPUTS[0].data
    assert result.as_numpy("label").tolist() == labels
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), np.array(OUTPUTS[1].data, dtype=np.float32).reshape(3, 2)
    )
    assert result.as_numpy("index").tolist() == OUTPUTS[2].data
    for output in result.get_response()["outputs"]:
        assert ("data" in output) == (output["name"] not in binary)
        assert ("binary_data_size" in output.get("parameters", {})) == (output["name"] in binary)


def request_with(outputs: list[httpclient.InferRequestedOutput] | None, **parameters: Any) -> Any:
    body, header = triton_body(infer_input("x", np.ones(1, dtype=np.float32), "FP32"), outputs=outputs)
    request = parse_request_body(body, header)
    if parameters:
        request = parse_infer_request({"inputs": [request.inputs[0].to_json()], "parameters": parameters})
    return request


def test_which_outputs_go_binary() -> None:
    names = ["label", "probabilities"]
    # tritonclient's defaults: no outputs named -> binary_data_output; named -> binary unless told not.
    assert binary_outputs(request_with(None), names) == {"label", "probabilities"}
    assert binary_outputs(request_with([httpclient.InferRequestedOutput("label")]), names) == {"label"}
    assert binary_outputs(request_with([httpclient.InferRequestedOutput("label", binary_data=False)]), names) == set()
    # A plain JSON client (no parameters) gets JSON, as before the extension.
    plain = parse_infer_request({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
    assert binary_outputs(plain, names) == set()
    assert binary_outputs(request_with(None, binary_data_output=True), names) == {"label", "probabilities"}
