"""The HTTP surface against a real server: metadata, inference, errors, versions, headers, metrics."""

from __future__ import annotations

import pytest

from tests.runtime.conftest import TENANT, RuntimeServer, start_server, text_request

INFER = "/v2/models/classifier/infer"


def test_liveness_and_readiness(lexicon_server: RuntimeServer) -> None:
    assert lexicon_server.get("/v2/health/live").status == 200
    ready = lexicon_server.get("/v2/health/ready")
    assert ready.status == 200 and ready.body == {"ready": True}


def test_server_metadata(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.get("/v2")
    assert reply.status == 200
    assert reply.body["name"] == "fairshare-runtime"
    assert reply.body["extensions"] == ["binary_tensor_data"]
    assert (reply.body["region"], reply.body["pool"], reply.body["replica"]) == ("us-east-1", "cpu-a", "r-test")


def test_model_metadata_lists_versions_and_tensors(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.get("/v2/models/classifier")
    assert reply.status == 200
    assert reply.body == {
        "name": "classifier",
        "versions": ["v1", "v2"],
        "platform": "fairshare-lexicon",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
        "device": "cpu",
    }
    assert lexicon_server.get("/v2/models/classifier/versions/v1").status == 200


def test_model_metadata_lists_only_the_versions_the_gateway_says_the_tenant_is_granted(
    lexicon_server: RuntimeServer,
) -> None:
    # The route's x-fairshare-model-versions (compiler/routes.py): a tenant granted v2 of the catalog's
    # v1 and v2 learns of v2 only, whichever version the path or the route's split names.
    granted = {**TENANT, "x-fairshare-model-versions": "v2", "x-fairshare-model-version": "v2"}
    assert lexicon_server.get("/v2/models/classifier", headers=granted).body["versions"] == ["v2"]
    assert lexicon_server.get("/v2/models/classifier/versions/v2", headers=granted).body["versions"] == ["v2"]
    both = {**TENANT, "x-fairshare-model-versions": "v1,v2", "x-fairshare-model-version": "v1"}
    reply = lexicon_server.get("/v2/models/classifier", headers=both)
    assert reply.body["versions"] == ["v1", "v2"] and reply.body["name"] == "classifier"


def test_model_ready_endpoints(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.get("/v2/models/classifier/ready")
    assert reply.status == 200 and reply.body == {"name": "classifier", "version": "v2", "ready": True}
    assert lexicon_server.get("/v2/models/classifier/versions/v1/ready").body["version"] == "v1"


def test_light_model_inference(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(
        INFER, text_request("I love this, it is great", "terrible and awful service", "a table", id="req-7")
    )
    assert reply.status == 200, reply.body
    assert reply.headers["x-fairshare-replica"] == "r-test"
    assert reply.body["model_name"] == "classifier" and reply.body["id"] == "req-7"
    label, score = reply.body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [3])
    assert label["data"] == ["positive", "negative", "neutral"]
    assert (score["name"], score["datatype"], score["shape"]) == ("score", "FP32", [3])
    assert score["data"][0] > 0 > score["data"][1] and score["data"][2] == 0


def test_response_id_is_generated_when_absent(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(INFER, text_request("fine"))
    assert isinstance(reply.body["id"], str) and reply.body["id"]


def test_requested_outputs_only(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(INFER, text_request("good", outputs=[{"name": "label"}]))
    assert [o["name"] for o in reply.body["outputs"]] == ["label"]


def test_empty_batch(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(INFER, text_request())
    assert reply.status == 200 and reply.body["outputs"][0]["shape"] == [0]


def test_default_version_is_the_highest(lexicon_server: RuntimeServer) -> None:
    # v2 understands negation; v1 does not. Which one answered shows in the body and in the label.
    reply = lexicon_server.infer(INFER, text_request("this is not good"))
    assert reply.body["model_version"] == "v2"
    assert reply.body["outputs"][0]["data"] == ["negative"]


def test_version_from_gateway_header(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(
        INFER, text_request("this is not good"), headers={**TENANT, "x-fairshare-model-version": "v1"}
    )
    assert reply.status == 200
    assert reply.body["model_version"] == "v1"
    assert reply.body["outputs"][0]["data"] == ["positive"]


def test_a_path_version_other_than_the_gateways_is_unknown(lexicon_server: RuntimeServer) -> None:
    """The gateway's header is the version the tenant's route picked; a path naming another one reached
    the tenant's split route because the tenant was not granted it."""
    refused = lexicon_server.infer("/v2/models/classifier/versions/v1/infer", text_request("x"),
                                   headers={**TENANT, "x-fairshare-model-version": "v2"})
    assert refused.status == 404 and refused.body["error"] == "unknown version 'v1' of model 'classifier'"
    pinned = lexicon_server.infer("/v2/models/classifier/versions/v2/infer", text_request("x"),
                                  headers={**TENANT, "x-fairshare-model-version": "v2"})
    assert pinned.status == 200 and pinned.body["model_version"] == "v2"
    direct = lexicon_server.infer("/v2/models/classifier/versions/v1/infer", text_request("x"), headers=TENANT)
    assert direct.status == 200 and direct.body["model_version"] == "v1"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "request body is empty"),
        ({"id": "x"}, "'inputs' is missing"),
        (
            {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["one"]}]},
            "input 'text': field 'shape' [2] holds 2 elements but field 'data' has 1",
        ),
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            "input 'text': field 'datatype' must be BYTES, got FP32",
        ),
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "TEXT", "data": ["a"]}]},
            "input 'text': field 'datatype' 'TEXT' is not a known datatype",
        ),
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [7]}]},
            "input 'text': field 'data' must hold strings",
        ),
        (
            {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
            "input 'prompt' is not an input of model 'classifier'",
        ),
    ],
)
def test_malformed_bodies_are_400_with_a_reason(lexicon_server: RuntimeServer, body: object, expected: str) -> None:
    reply = lexicon_server.infer(INFER, body)
    assert reply.status == 400
    assert expected in reply.error
    assert reply.headers["x-fairshare-replica"] == "r-test"


def test_unknown_model_and_version_are_404(lexicon_server: RuntimeServer) -> None:
    model = lexicon_server.infer("/v2/models/nosuch/infer", text_request("x"))
    assert model.status == 404 and "unknown model 'nosuch'" in model.error
    version = lexicon_server.infer("/v2/models/classifier/versions/v9/infer", text_request("x"))
    assert version.status == 404 and "unknown version 'v9' of model 'classifier'" in version.error
    by_header = lexicon_server.infer(INFER, text_request("x"), headers={**TENANT, "x-fairshare-model-version": "v9"})
    assert by_header.status == 404
    assert lexicon_server.get("/v2/models/nosuch").status == 404
    assert lexicon_server.get("/v2/models/nosuch/ready").status == 404


def test_unknown_route_and_method_answer_in_oip_error_shape(lexicon_server: RuntimeServer) -> None:
    route = lexicon_server.get("/v3/nothing")
    assert route.status == 404 and "no route" in route.error
    method = lexicon_server.request("GET", INFER)
    assert method.status == 405 and "not allowed" in method.error


def test_region_mismatch_is_403(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(INFER, text_request("x"), headers={**TENANT, "x-fairshare-region": "eu-west-1"})
    assert reply.status == 403
    assert "eu-west-1" in reply.error and "us-east-1" in reply.error
    same = lexicon_server.infer(INFER, text_request("x"), headers={**TENANT, "x-fairshare-region": "us-east-1"})
    assert same.status == 200


def test_missing_tenant_header_is_400(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer(INFER, text_request("x"), headers={})
    assert reply.status == 400
    assert reply.error == "missing x-fairshare-tenant header (requests must come through the gateway)"


def test_anonymous_requests_when_allowed() -> None:
    server = start_server("classifier:v1:lexicon", allow_anonymous=True)
    try:
        server.wait_ready(5)
        assert server.infer(INFER, text_request("x"), headers={}).status == 200
    finally:
        server.stop()


def test_oversized_body_is_413() -> None:
    server = start_server("classifier:v1:lexicon", max_body_bytes=1024)
    try:
        server.wait_ready(5)
        reply = server.infer(INFER, text_request("x" * 2048))
        assert reply.status == 413 and "larger than 1024 bytes" in reply.error
    finally:
        server.stop()


def test_metrics_count_requests_per_tenant_and_model(lexicon_server: RuntimeServer) -> None:
    lexicon_server.infer(INFER, text_request("good"), headers={"x-fairshare-tenant": "metrics-tenant"})
    lexicon_server.infer("/v2/models/nosuch/infer", text_request("x"))
    reply = lexicon_server.get("/metrics")
    assert reply.status == 200
    text = reply.body
    assert 'fairshare_runtime_requests_total{code="200",model="classifier",version="v2"}' in text
    assert 'fairshare_runtime_requests_total{code="404",model="unknown",version="unknown"}' in text
    assert 'fairshare_runtime_service_seconds_total{tenant="metrics-tenant"}' in text
    assert 'fairshare_runtime_model_ready{model="classifier",version="v1"} 1.0' in text
    assert "fairshare_runtime_queue_depth 0.0" in text
    assert "nosuch" not in text  # request paths never become label values
