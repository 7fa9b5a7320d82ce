"""Request validation on its own: every mistake is a ProtocolError naming the input and field."""

from __future__ import annotations

import json
import math

import pytest

from inference_images.runtime.models.base import (
    DEFAULT_MAX_ROWS,
    DEFAULT_REQUEST_LIMITS,
    RequestLimits,
    Tensor,
    TensorSpec,
    request_limits,
)
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.protocol import (
    MAX_JSON_DEPTH,
    InferenceRequest,
    ProtocolError,
    RequestTooLargeError,
    SizeLimit,
    build_infer_response,
    check_against_model,
    check_limits,
    decode_json,
    parse_infer_request,
    parse_request_body,
    tensor_bytes,
)


def one_input(**fields: object) -> dict[str, object]:
    tensor: dict[str, object] = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    tensor.update(fields)
    return {"inputs": [{k: v for k, v in tensor.items() if v is not None}]}


def reason(doc: object) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_infer_request(doc)
    return str(caught.value)


def test_valid_request_parses_and_keeps_id_and_parameters() -> None:
    request = parse_infer_request({"id": "r1", "parameters": {"p": 1}, **one_input()})
    assert request.id == "r1"
    assert request.parameters == {"p": 1}
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape, tensor.data) == ("text", "BYTES", (2,), ["a", "b"])
    assert request.outputs is None


def test_nested_data_is_flattened_in_row_major_order() -> None:
    request = parse_infer_request(
        {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]}
    )
    assert request.inputs[0].data == [1, 2, 3, 4]


@pytest.mark.parametrize("body", [b"{not json", b"", b"   ", b'{"inputs": NaN}', b"\xff\xfe"])
def test_bad_json_is_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="JSON"):
        decode_json(body)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "must be a JSON object"),
        ({}, "'inputs' is missing"),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": {"name": "text"}}, "non-empty list"),
        ({"id": 5, "inputs": []}, "'id' must be a string"),
        ({"parameters": [], "inputs": []}, "'parameters' must be an object"),
        ({"inputs": ["text"]}, "inputs[0] must be an object"),
        ({"inputs": [{"shape": [1]}]}, "inputs[0]: field 'name'"),
        (one_input(shape=None), "input 'text': field 'shape' is missing"),
        (one_input(datatype=None), "input 'text': field 'datatype' is missing"),
        (one_input(data=None), "input 'text': field 'data' is missing"),
        (one_input(shape=[3]), "input 'text': field 'shape' [3] holds 3 elements but field 'data' has 2"),
        (one_input(shape=[-1]), "input 'text': field 'shape' must be a list of non-negative integers"),
        (one_input(shape="2"), "input 'text': field 'shape' must be a list"),
        (one_input(datatype="STRING"), "input 'text': field 'datatype' 'STRING' is not a known datatype"),
        (one_input(datatype="fp32"), "is not a known datatype"),
        (one_input(data="ab"), "input 'text': field 'data' must be a list"),
        (one_input(data=["a", 3]), "input 'text': field 'data' must hold strings for datatype BYTES; element 1"),
        (one_input(data=["café", "\ud800 hi"]),
         "input 'text': element 1 of field 'data' is not valid Unicode text (a lone UTF-16 surrogate"),
        (one_input(datatype="FP32", data=[1.0, "x"]), "must hold numbers for datatype FP32; element 1"),
        (one_input(datatype="FP32", data=[1.0, True]), "element 1 is a boolean"),
        (one_input(datatype="UINT8", data=[1, 256]), "integers in [0, 255] for datatype UINT8; element 1"),
        (one_input(datatype="INT32", data=[1, 2.5]), "for datatype INT32; element 1"),
        (one_input(datatype="BOOL", data=[True, 1]), "must hold booleans for datatype BOOL; element 1"),
        (one_input(parameters=[1]), "input 'text': field 'parameters' must be an object"),
        ({"inputs": one_input()["inputs"] * 2}, "input 'text' appears more than once"),
        ({**one_input(), "outputs": [{"nome": "label"}]}, "outputs[0] must be an object with"),
        ({**one_input(), "outputs": "label"}, "'outputs' must be a list"),
    ],
)
def test_malformed_requests_name_the_problem(doc: object, expected: str) -> None:
    assert expected in reason(doc)


def test_absurd_nesting_is_refused_without_recursion() -> None:
    data: list[object] = ["x"]
    for _ in range(10_000):
        data = [data]
    assert "nested deeper" in reason({"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": data}]})


def test_request_is_held_to_the_model_contract() -> None:
    model = LexiconSentimentModel("classifier", "v1", negation=False)

    def reason_for(doc: dict[str, object]) -> str:
        with pytest.raises(ProtocolError) as caught:
            check_against_model(parse_infer_request(doc), model)
        return str(caught.value)

    check_against_model(parse_infer_request(one_input()), model)
    assert "input 'prompt' is not an input of model 'classifier' (inputs: text)" in reason_for(
        {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    )
    assert "input 'text': field 'datatype' must be BYTES, got FP32" in reason_for(
        one_input(datatype="FP32", data=[1.0, 2.0])
    )
    assert "input 'text': field 'shape' [2, 1] does not fit [n]" in reason_for(one_input(shape=[2, 1]))
    assert "output 'logits' is not an output of model 'classifier'" in reason_for(
        {**one_input(), "outputs": [{"name": "logits"}]}
    )


def test_fixed_dimensions_in_a_spec_are_enforced() -> None:
    class Rows:
        name, version, platform, device = "rows", "v1", "test", "cpu"
        inputs = (TensorSpec("x", "FP32", (-1, 3)),)
        outputs = (TensorSpec("y", "FP32", (-1,)),)

    def request(shape: list[int]) -> InferenceRequest:
        return parse_infer_request(
            {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": [0.0] * math.prod(shape)}]}
        )

    check_against_model(request([2, 3]), Rows())  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=r"input 'x': field 'shape' \[2, 4\] does not fit \[n, 3\]"):
        check_against_model(request([2, 4]), Rows())  # type: ignore[arg-type]


def test_response_keeps_requested_outputs_in_order() -> None:
    model = LexiconSentimentModel("classifier", "v2", negation=True)
    request = parse_infer_request({**one_input(), "outputs": [{"name": "score"}]})
    body = build_infer_response(model, "id-1", model.predict(request.input_map()), request.outputs)
    assert body["model_name"] == "classifier" and body["model_version"] == "v2" and body["id"] == "id-1"
    assert [o["name"] for o in body["outputs"]] == ["score"]


# -- depth and size limits ---------------------------------------------------------------------------------


def decode_reason(body: bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        decode_json(body)
    return str(caught.value)


def test_a_body_nested_past_the_interpreters_limit_is_refused_naming_where() -> None:
    # The shape that used to escape as a RecursionError (a 500): far past what Python's decoder recurses.
    reason = decode_reason(b"[" * 20_000 + b"]" * 20_000)
    assert reason == f"request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep (at byte 32)"


def test_the_depth_limit_counts_arrays_and_objects_and_names_the_path() -> None:
    def body(depth: int) -> bytes:
        return b'{"inputs": [{"parameters": ' + b"[" * (depth - 3) + b"]" * (depth - 3) + b"}]}"

    assert isinstance(decode_json(body(MAX_JSON_DEPTH)), dict)
    reason = decode_reason(body(MAX_JSON_DEPTH + 1))
    assert f"more than {MAX_JSON_DEPTH} levels deep (at inputs[0].parameters[0]" in reason


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '"' + "[" * 100 + '\\"{' + '"'
    assert decode_json(('{"inputs": [' + text + "]}").encode()) == {"inputs": ["[" * 100 + '"{']}
    # Past the interpreter's limit, the offset reported skips strings too.
    assert "(at byte 39)" in decode_reason(b'["[[[["' + b"," + b"[" * 20_000 + b"]" * 20_000 + b"]")


def test_odd_keys_are_not_quoted_in_the_reason() -> None:
    secret = "jane.doe@example.com"
    body = b'{"' + secret.encode() + b'": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"
    reason = decode_reason(body)
    assert secret not in reason and "(at ...[0]" in reason


def limited(*tensors: Tensor) -> InferenceRequest:
    return InferenceRequest(None, {}, tensors, None)


def test_rows_past_the_models_limit_are_refused_naming_the_limit() -> None:
    model = LexiconSentimentModel("classifier", "v1", negation=False)
    ok = limited(Tensor("text", "BYTES", (3,), ["a", "b", "c"]))
    check_limits(ok, model, RequestLimits(max_rows=3))
    with pytest.raises(RequestTooLargeError) as caught:
        check_limits(ok, model, RequestLimits(max_rows=2))
    assert str(caught.value) == (
        "input 'text' has 3 rows; model 'classifier' accepts at most 2 rows per request "
        "(split it into several requests)"
    )


def test_bytes_past_the_models_limit_are_refused_naming_the_limit() -> None:
    model = LexiconSentimentModel("classifier", "v1", negation=False)
    request = limited(Tensor("text", "BYTES", (2,), ["é", "ab"]), Tensor("x", "FP32", (2, 2), [0.0] * 4))
    assert [tensor_bytes(t) for t in request.inputs] == [4, 16]
    check_limits(request, model, RequestLimits(max_bytes=20))
    expected = "inputs hold 20 bytes of data; model 'classifier' accepts at most 19 bytes"
    with pytest.raises(RequestTooLargeError, match=expected):
        check_limits(request, model, RequestLimits(max_bytes=19))


def test_a_model_that_declares_no_limits_gets_the_default() -> None:
    class Plain:
        name = "plain"

    assert request_limits(Plain()) == DEFAULT_REQUEST_LIMITS
    assert DEFAULT_REQUEST_LIMITS.max_rows == DEFAULT_MAX_ROWS and DEFAULT_REQUEST_LIMITS.max_bytes is None
    assert request_limits(LexiconSentimentModel("c", "v1", negation=False)).max_rows == 8192


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedder:100", ("embedder", RequestLimits(100))),
        ("embedder:100:2048", ("embedder", RequestLimits(100, 2048))),
    ],
)
def test_request_limit_specs_parse(text: str, expected: tuple[str, RequestLimits]) -> None:
    assert RequestLimits.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedder", "must be MODEL:MAX_ROWS"),
        ("embedder:1:2:3", "must be MODEL:MAX_ROWS"),
        ("embedder:lots", "must be integers"),
        ("embedder:0", "max_rows must be a positive integer"),
        ("embedder:5:0", "max_bytes must be a positive integer"),
    ],
)
def test_bad_request_limit_specs_name_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        RequestLimits.parse(text)


def test_a_size_limit_refuses_from_shapes_before_any_data_is_looked_at() -> None:
    limit = SizeLimit("m", RequestLimits(max_rows=4, max_bytes=64))
    rows = {"inputs": [{"name": "x", "shape": [5], "datatype": "BYTES", "data": "not even a list"}]}
    with pytest.raises(RequestTooLargeError, match=r"^input 'x' has 5 rows; model 'm' accepts at most 4 rows"):
        parse_request_body(json.dumps(rows).encode(), None, size_limit=limit)
    # Bytes follow from the shape of a fixed-size input: 4 x 8 FP32 = 128 bytes.
    floats = {"inputs": [{"name": "x", "shape": [4, 8], "datatype": "FP32", "data": [None]}]}
    with pytest.raises(RequestTooLargeError, match=r"^inputs hold 128 bytes of data; model 'm' accepts at most 64"):
        parse_request_body(json.dumps(floats).encode(), None, size_limit=limit)
    # Within the limits, the data is checked as ever.
    floats["inputs"][0]["shape"] = [2, 8]
    with pytest.raises(ProtocolError, match="holds 16 elements but field 'data' has 1"):
        parse_request_body(json.dumps(floats).encode(), None, size_limit=limit)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT8", [1, 2, 128], "must hold integers in [-128, 127] for datatype INT8; element 2 is a number"),
        ("UINT8", [0, -1], "must hold integers in [0, 255] for datatype UINT8; element 1 is a number"),
        ("INT32", [1, 2.5], "in [-2147483648, 2147483647] for datatype INT32; element 1 is a number"),
        ("FP32", [1.0, True], "must hold numbers for datatype FP32; element 1 is a boolean"),
        ("BOOL", [True, 0], "must hold booleans for datatype BOOL; element 1 is a number"),
        ("BYTES", ["a", "b", 3], "must hold strings for datatype BYTES; element 2 is a number"),
        ("BYTES", ["a", "\ud800"], "element 1 of field 'data' is not valid Unicode text"),
    ],
)
def test_each_bad_element_is_named(datatype: str, data: list[object], message: str) -> None:
    body = {"inputs": [{"name": "x", "shape": [len(data)], "datatype": datatype, "data": data}]}
    with pytest.raises(ProtocolError) as caught:
        parse_request_body(json.dumps(body).encode(), None)
    assert message in str(caught.value)
