"""The ``onnx`` format: a graph's tensors become the model's metadata and contract, answers are exactly
onnxruntime's, mismatched requests are 400s naming the input, bad graphs fail their model with the
reason; as a catalog model (``--model name:v:onnx --artifact``) and as a tenant's own model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.__main__ import parse_settings
from inference_images.runtime.models.artifacts import ArtifactStore
from inference_images.runtime.models.onnx_format import OnnxFormatError, load_graph
from inference_images.runtime.models.registry import ModelRepository, default_loaders
from tests.runtime import onnx_graphs
from tests.runtime.conftest import TENANT, RuntimeServer
from tests.runtime.own_server import AdminRuntimeServer, own_headers, start_own_server, tensor


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return onnx_graphs.linear(tmp_path_factory.mktemp("graphs") / "router.onnx", n_in=4, n_out=3, seed=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminRuntimeServer]:
    server = start_own_server(tmp_path_factory.mktemp("runtime"))
    yield server
    server.stop()


def test_graph_tensors_become_the_model_metadata(graph: tuple[Path, str]) -> None:
    loaded = load_graph(graph[0], None, "model 'router'")
    assert [(s.name, s.datatype, s.shape) for s in loaded.inputs] == [("x", "FP32", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in loaded.outputs] == [
        ("logits", "FP32", (-1, 3)),
        ("probabilities", "FP32", (-1, 3)),
        ("label", "INT64", (-1,)),
    ]
    assert loaded.device == "cpu"
    assert loaded.footprint_bytes >= graph[0].stat().st_size


def test_own_model_answers_exactly_what_onnxruntime_computes(
    server: AdminRuntimeServer, graph: tuple[Path, str]
) -> None:
    path, sha = graph
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    expected = onnx_graphs.run(path, {"x": x})
    headers = own_headers("acme", path, sha)
    reply = server.infer(
        "/v2/models/router/infer", {"inputs": [tensor("x", "FP32", [5, 4], x.ravel().tolist())]}, headers=headers
    )
    assert reply.status == 200, reply.body
    assert reply.body["model_name"] == "router" and reply.body["model_version"] == "1"
    outputs = {o["name"]: o for o in reply.body["outputs"]}
    for name, want in expected.items():
        got = np.array(outputs[name]["data"], dtype=want.dtype).reshape(outputs[name]["shape"])
        np.testing.assert_array_equal(got, want)
    assert outputs["label"]["datatype"] == "INT64"

    metadata = server.get("/v2/models/router", headers=headers)
    assert metadata.status == 200
    assert metadata.body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata.body["outputs"]] == ["logits", "probabilities", "label"]
    assert metadata.body["platform"] == "onnxruntime" and metadata.body["artifact"]["sha256"] == sha
    # The tenant sees which bytes serve it, never where the platform keeps them.
    assert metadata.body["artifact"] == {"sha256": sha}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([tensor("x", "INT64", [1, 4], [1, 2, 3, 4])], "input 'x': field 'datatype' must be FP32, got INT64"),
        ([tensor("x", "FP32", [1, 3], [1, 2, 3])], "input 'x': field 'shape' [1, 3] does not fit [n, 4]"),
        ([tensor("y", "FP32", [1, 4], [1, 2, 3, 4])], "input 'y' is not an input of model 'router' (inputs: x)"),
    ],
)
def test_a_request_that_does_not_fit_the_graph_is_a_400_naming_the_input(
    server: AdminRuntimeServer, graph: tuple[Path, str], inputs: list[dict[str, object]], message: str
) -> None:
    reply = server.infer("/v2/models/router/infer", {"inputs": inputs}, headers=own_headers("acme", *graph))
    assert reply.status == 400
    assert message in reply.error
    assert "acme:" not in reply.error  # the name its caller used, not the shared cache's qualified one


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_calls_a_tenants_model(server: AdminRuntimeServer, graph: tuple[Path, str], binary: bool) -> None:
    import tritonclient.http as httpclient

    path, sha = graph
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        # A fresh dict per call: tritonclient writes Inference-Header-Content-Length into the one it is given.
        assert client.is_model_ready("router", headers=own_headers("acme", path, sha))
        metadata = client.get_model_metadata("router", headers=own_headers("acme", path, sha))
        assert metadata["inputs"][0]["name"] == "x"
        x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
        request = httpclient.InferInput("x", [3, 4], "FP32")
        # tritonclient's defaults (binary inputs, every output binary), or JSON tensors throughout.
        request.set_data_from_numpy(x, binary_data=binary)
        outputs = (
            None
            if binary
            else [httpclient.InferRequestedOutput(o, binary_data=False) for o in ("logits", "probabilities", "label")]
        )
        result = client.infer("router", [request], headers=own_headers("acme", path, sha), outputs=outputs)
        assert all(("binary_data_size" in o.get("parameters", {})) == binary for o in result.get_response()["outputs"])
        for name, want in onnx_graphs.run(path, {"x": x}).items():
            got = result.as_numpy(name)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    finally:
        client.close()


def test_corrupt_graph_is_503_with_the_reason_and_the_replica_keeps_serving(
    server: AdminRuntimeServer, tmp_path: Path, graph: tuple[Path, str]
) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx graph at all")
    sha = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    reply = server.infer(
        "/v2/models/broken/infer",
        {"inputs": [tensor("x", "FP32", [1, 4], [1, 2, 3, 4])]},
        headers=own_headers("acme", corrupt, sha),
    )
    assert reply.status == 503
    assert reply.error.startswith("model 'broken' version '1': not a loadable ONNX graph"), reply.error
    assert server.row("acme:broken")["state"] == "failed"
    ok = server.infer(
        "/v2/models/router/infer",
        {"inputs": [tensor("x", "FP32", [1, 4], [1, 2, 3, 4])]},
        headers=own_headers("acme", *graph),
    )
    assert ok.status == 200 and server.get("/v2/health/ready").status == 200


def test_classifier_outputs_that_are_not_tensors_fail_with_how_to_export(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 3)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(np.int64)
    fitted = LogisticRegression().fit(features, labels)
    zipmap = tmp_path / "zipmap.onnx"
    zipmap.write_bytes(to_onnx(fitted, features[:1]).SerializeToString())
    with pytest.raises(OnnxFormatError, match="zipmap"):
        load_graph(zipmap, None, "model 'acme:scorer'")
    # Exported as the error says, the same fit serves, and agrees with scikit-learn.
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(to_onnx(fitted, features[:1], options={"zipmap": False}).SerializeToString())
    loaded = load_graph(plain, None, "model 'acme:scorer'")
    labels_out, probabilities = loaded.session.run(None, {loaded.inputs[0].name: features})
    np.testing.assert_array_equal(labels_out, fitted.predict(features))
    np.testing.assert_allclose(probabilities, fitted.predict_proba(features), rtol=1e-5, atol=1e-6)


def test_catalog_model_in_onnx_from_the_command_line(tmp_path: Path, graph: tuple[Path, str]) -> None:
    path, sha = graph
    settings, _ = parse_settings(
        [
            "--region",
            "us-east-1",
            "--pool",
            "p",
            "--port",
            "0",
            "--no-access-log",
            "--model",
            "scorer:v1:onnx",
            "--artifact",
            f"scorer:v1={path}#sha256={sha}",
        ]
    )
    repository = ModelRepository(settings.models, default_loaders(), ArtifactStore(tmp_path / "cache"))
    server = RuntimeServer(settings, repository).start()
    try:
        server.wait_ready(30)
        x = np.full((1, 4), 0.5, dtype=np.float32)
        reply = server.infer("/v2/models/scorer/infer", {"inputs": [tensor("x", "FP32", [1, 4], x.ravel().tolist())]})
        assert reply.status == 200, reply.body
        logits = next(o for o in reply.body["outputs"] if o["name"] == "logits")
        np.testing.assert_array_equal(
            np.array(logits["data"], dtype=np.float32), onnx_graphs.run(path, {"x": x})["logits"].ravel()
        )
        assert server.get("/v2/models/scorer").body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    finally:
        server.stop()


def test_catalog_onnx_without_an_artifact_is_not_ready_with_the_reason() -> None:
    from tests.runtime.conftest import start_server

    server = start_server("scorer:v1:onnx")
    try:
        for _ in range(200):
            reply = server.get("/v2/models/scorer/ready")
            if "failed" in reply.body.get("reason", ""):
                break
        assert reply.status == 503 and "needs an artifact" in reply.body["reason"]
        assert (
            server.infer("/v2/models/scorer/infer", {"inputs": [tensor("x", "FP32", [1], [1])]}, TENANT).status == 503
        )
    finally:
        server.stop()


def test_a_replica_of_an_own_models_only_pool_is_ready_once_up_and_serves_them(
    tmp_path: Path, graph: tuple[Path, str]
) -> None:
    # What the local launcher and the chart start for a pool that hosts only tenants' own models: no --model.
    settings, _ = parse_settings(
        ["--region", "us-east-1", "--pool", "own-only", "--port", "0", "--admin-port", "0", "--no-access-log"]
    )
    assert settings.models == ()
    server = AdminRuntimeServer(settings, ModelRepository((), default_loaders(), ArtifactStore(tmp_path))).start()
    try:
        # Ready with no catalog model to wait for, before any own model was asked for.
        ready = server.get("/v2/health/ready")
        assert (ready.status, ready.body) == (200, {"ready": True})
        assert server.index() == []
        path, sha = graph
        x = np.full((2, 4), 0.25, dtype=np.float32)
        reply = server.infer(
            "/v2/models/router/infer",
            {"inputs": [tensor("x", "FP32", [2, 4], x.ravel().tolist())]},
            headers=own_headers("acme", path, sha),
        )
        assert reply.status == 200, reply.body
        label = next(o for o in reply.body["outputs"] if o["name"] == "label")
        assert label["data"] == onnx_graphs.run(path, {"x": x})["label"].tolist()
        assert server.get("/v2/health/ready").status == 200
        # A catalog name this replica does not serve is the usual 404, saying it serves none.
        unknown = server.infer("/v2/models/classifier/infer", {"inputs": [tensor("text", "BYTES", [1], ["hi"])]})
        assert unknown.status == 404 and "no catalog models" in unknown.error
    finally:
        server.stop()
