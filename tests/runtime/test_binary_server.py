"""Triton's binary tensor data extension through the runtime's HTTP API: tritonclient with its defaults
(binary inputs and outputs) gets what a JSON client gets, PII rules see binary text, the per-request limits
hold binary requests too, and a malformed binary body is a 400 naming the problem."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Mapping

import numpy as np
import pytest
import tritonclient.http as httpclient

from inference_images.runtime.gateway import BINARY_EXTENSION
from inference_images.runtime.models.base import RequestLimits
from inference_images.runtime.models.registry import default_loaders
from inference_images.runtime.protocol import HEADER_LENGTH_HEADER
from tests.runtime.conftest import TENANT, RuntimeServer, start_server, text_request
from tests.runtime.test_pii_server import CARD, HEADERS, EchoModel

TRITON = httpclient.InferenceServerClient
TICKETS = ["refund my invoice, it is awful", "great service, thank you", "naïve café ☕ is fine"]


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    loaders = default_loaders()
    loaders.register("echo", lambda name, version: EchoModel(name, version, negation=False))
    running = start_server(
        "classifier:v1:lexicon",
        "echo:v1:echo",
        "small:v1:lexicon",
        loaders=loaders,
        request_limits=(("small", RequestLimits(max_rows=2, max_bytes=16)),),
    )
    running.wait_ready(10)
    yield running
    running.stop()


def text_input(texts: list[str], binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
    return tensor.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=binary)


def post_raw(
    server: RuntimeServer, path: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def post_triton(
    server: RuntimeServer,
    model: str,
    inputs: list[httpclient.InferInput],
    headers: Mapping[str, str],
    outputs: list[httpclient.InferRequestedOutput] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    body, json_size = TRITON.generate_request_body(inputs, outputs=outputs)
    extra = {HEADER_LENGTH_HEADER: str(json_size)} if json_size is not None else {}
    return post_raw(server, f"/v2/models/{model}/infer", body, {**headers, **extra})


def test_tritonclient_defaults_get_what_a_json_client_gets(server: RuntimeServer) -> None:
    plain = server.infer("/v2/models/classifier/infer", text_request(*TICKETS))
    assert plain.status == 200, plain.body
    want = {o["name"]: o["data"] for o in plain.body["outputs"]}

    # A fresh headers dict per call: tritonclient writes Inference-Header-Content-Length into the one given.
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert BINARY_EXTENSION in client.get_server_metadata()["extensions"]
        result = client.infer("classifier", [text_input(TICKETS)], headers=dict(TENANT))  # binary both ways
        response = result.get_response()
        assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in response["outputs"])
        assert [s.decode() for s in result.as_numpy("label").tolist()] == want["label"]
        np.testing.assert_array_equal(result.as_numpy("score"), np.array(want["score"], dtype=np.float32))
        # One output asked for in binary, the other in JSON: each as asked.
        mixed = client.infer(
            "classifier",
            [text_input(TICKETS)],
            headers=dict(TENANT),
            outputs=[
                httpclient.InferRequestedOutput("label", binary_data=False),
                httpclient.InferRequestedOutput("score"),
            ],
        )
        assert mixed.get_output("label")["data"] == want["label"]
        assert "binary_data_size" in mixed.get_output("score")["parameters"]
        # JSON mode, binary_data=False throughout, still works.
        json_mode = client.infer(
            "classifier",
            [text_input(TICKETS, binary=False)],
            headers=dict(TENANT),
            outputs=[httpclient.InferRequestedOutput("label", binary_data=False)],
        )
        assert json_mode.as_numpy("label").tolist() == want["label"]
    finally:
        client.close()


def test_pii_rules_see_binary_text(server: RuntimeServer) -> None:
    status, headers, body = post_triton(server, "echo", [text_input(["mail bob@example.com", "hello"])], HEADERS)
    assert status == 200, body
    assert headers["x-fairshare-pii-redacted"] == "email=1"
    result = TRITON.parse_response_body(body, header_length=int(headers[HEADER_LENGTH_HEADER.lower()]))
    # What reached the model (the echo model answers with it) is the placeholder, not the address.
    assert result.as_numpy("label").tolist() == [b"mail [EMAIL]", b"hello"]

    status, _, body = post_triton(server, "echo", [text_input(["ok", f"pays {CARD}"])], HEADERS)
    assert status == 422
    assert "input 'text' contains credit_card" in json.loads(body)["error"] and CARD.encode() not in body


def test_request_limits_hold_binary_requests(server: RuntimeServer) -> None:
    status, _, body = post_triton(server, "small", [text_input(["a", "b", "c"])], TENANT)
    assert status == 413
    assert "input 'text' has 3 rows; model 'small' accepts at most 2 rows per request" in json.loads(body)["error"]
    status, _, body = post_triton(server, "small", [text_input(["0123456789", "0123456789"])], TENANT)
    assert status == 413
    assert "inputs hold 20 bytes of data; model 'small' accepts at most 16 bytes" in json.loads(body)["error"]
    status, _, body = post_triton(server, "small", [text_input(["0123456789", "012345"])], TENANT)
    assert status == 200, body


@pytest.mark.parametrize(
    ("cut", "header", "message"),
    [
        (0, "100000", "says the JSON part is 100000 bytes but the body has only"),
        (2, None, "input 'text': element 1 of its binary BYTES data says 5 bytes but only 3 are left"),
        (0, "not-a-number", "header Inference-Header-Content-Length must be a byte count"),
    ],
    ids=["header-past-body", "truncated-element", "header-not-a-number"],
)
def test_a_malformed_binary_body_is_a_400_naming_the_problem(
    server: RuntimeServer, cut: int, header: str | None, message: str
) -> None:
    body, json_size = TRITON.generate_request_body([text_input(["hello", "world"])])
    # Truncated inside the last element, with binary_data_size still saying the whole tensor: the input's
    # own size is checked first, so shorten the size too to reach the element framing.
    if cut:
        head = json.loads(body[:json_size])
        head["inputs"][0]["parameters"]["binary_data_size"] -= cut
        new_head = json.dumps(head).encode()
        body, json_size = new_head + body[json_size:-cut], len(new_head)
    status, _, reply = post_raw(
        server, "/v2/models/classifier/infer", body, {**TENANT, HEADER_LENGTH_HEADER: header or str(json_size)}
    )
    assert status == 400, reply
    assert message in json.loads(reply)["error"]
    assert server.infer("/v2/models/classifier/infer", text_request("still serving")).status == 200
