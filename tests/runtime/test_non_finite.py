"""Numbers JSON cannot carry, through the runtime's HTTP API: an input that would be NaN or infinite in
its tensor (``1e999``, ``1e39`` as FP32, NaN in binary data) is a 400 naming the input and the element,
and a model output holding NaN or infinity is never written as the non-JSON tokens ``NaN``/``Infinity``:
as JSON it is a 500 naming the output, as binary data it is served as it is."""

from __future__ import annotations

import http.client
import json
import math
import struct
from collections.abc import Iterator, Mapping

import pytest

from inference_images.runtime.models.base import ANY_DIM, Tensor, TensorSpec
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.registry import default_loaders
from tests.runtime.conftest import TENANT, RuntimeServer, start_server

INFER = "/v2/models/scale/infer"


class ScaleModel(LexiconSentimentModel):
    """Multiplies its FP32 input by 1e30: finite inputs past 3.4e8 overflow to infinity, as a real
    model's arithmetic may."""

    inputs = (TensorSpec("x", "FP32", (ANY_DIM,)),)
    outputs = (TensorSpec("y", "FP32", (ANY_DIM,)), TensorSpec("label", "BYTES", (ANY_DIM,)))

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        xs = inputs["x"].data
        ys = [math.inf if abs(x) * 1e30 > 3.4e38 else x * 1e30 for x in xs]
        return [Tensor("y", "FP32", (len(xs),), ys), Tensor("label", "BYTES", (len(xs),), ["ok"] * len(xs))]

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        return float(len(inputs["x"].data))


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    loaders = default_loaders()
    loaders.register("scale", lambda name, version: ScaleModel(name, version, negation=False))
    running = start_server("scale:v1:scale", loaders=loaders)
    running.wait_ready(10)
    yield running
    running.stop()


def floats(raw: str, datatype: str = "FP32") -> str:
    # Spelled by hand: json.dumps would write 1e999 as Infinity.
    return '{"inputs": [{"name": "x", "shape": [2], "datatype": "' + datatype + '", "data": [1, ' + raw + "]}]}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (floats("1e999"), "input 'x': element 1 of field 'data' is infinite"),
        (floats("-1e999"), "input 'x': element 1 of field 'data' is infinite"),
        (floats("1e39"), "input 'x': element 1 of field 'data' is 1e+39, beyond FP32's largest magnitude"),
        (floats("65505", "FP16"), "input 'x': element 1 of field 'data' is 65505, beyond FP16's largest magnitude"),
        (floats("NaN"), "NaN is not valid JSON"),
    ],
)
def test_a_number_that_would_not_be_finite_in_its_tensor_is_a_400(server: RuntimeServer, body: str,
                                                                   message: str) -> None:
    reply = server.infer(INFER, body)
    assert reply.status == 400, reply.body
    assert message in reply.error and reply.body["code"] == 400


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_binary_input_holding_nan_or_infinity_is_a_400(server: RuntimeServer, value: float) -> None:
    header = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    reply = server.infer(INFER, header + struct.pack("<2f", 1.0, value),
                         headers={**TENANT, "Inference-Header-Content-Length": str(len(header))})
    assert reply.status == 400, reply.body
    assert "input 'x': element 1 of its binary data is" in reply.error


def raw_post(server: RuntimeServer, body: bytes) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", INFER, body=body, headers={**TENANT, "content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        conn.close()


def strict_json(raw: bytes) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"{token} is not JSON")
    return json.loads(raw, parse_constant=refuse)


def test_a_non_finite_output_is_never_written_as_json(server: RuntimeServer) -> None:
    status, content_type, raw = raw_post(server, floats("1e10").encode())
    assert status == 500 and content_type.startswith("application/json")
    body = strict_json(raw)
    assert body == {"error": "model 'scale' version 'v1' produced an infinity in output 'y' (element 1), which "
                             "JSON cannot carry; ask for that output as binary data (parameters.binary_data) to "
                             "receive it as is", "code": 500}
    # Finite outputs are served as ever.
    status, _, raw = raw_post(server, floats("2").encode())
    assert status == 200 and strict_json(raw)["outputs"][0]["data"] == [1e30, 2e30]  # type: ignore[index]


def test_a_non_finite_output_asked_for_as_binary_is_served_as_it_is(server: RuntimeServer) -> None:
    body = json.loads(floats("1e10"))
    body["outputs"] = [{"name": "y", "parameters": {"binary_data": True}}]
    status, _, raw = raw_post(server, json.dumps(body).encode())
    assert status == 200
    header = strict_json(raw[: len(raw) - 8])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 8  # type: ignore[index]
    assert struct.unpack("<2f", raw[-8:]) == (pytest.approx(1e30, rel=1e-6), math.inf)
