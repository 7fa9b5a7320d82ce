"""Request validation on its own: every mistake is a ProtocolError naming the input and field."""

from __future__ import annotations

import math

import pytest

from inference_images.runtime.models.base import TensorSpec
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.protocol import (
    InferenceRequest,
    ProtocolError,
    build_infer_response,
    check_against_model,
    decode_json,
    parse_infer_request,
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
