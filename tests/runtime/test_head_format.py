"""The ``head`` format: a tenant's small ONNX graph over a catalog model's output. The base runs once per
request, batched across tenants with everyone else's requests for it; the head runs on its output. A head
that does not fit its base, or a base this replica does not serve, fails with both named."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.models.base import ANY_DIM, Tensor, TensorSpec
from inference_images.runtime.models.registry import LoaderRegistry, default_loaders
from inference_images.runtime.scheduling import BatchLimit
from tests.runtime import onnx_graphs
from tests.runtime.conftest import text_request
from tests.runtime.own_server import own_headers, start_own_server


def test_head_over_the_lexicon_score_runs_base_then_head(tmp_path: Path) -> None:
    path, sha = onnx_graphs.scale(tmp_path / "double.onnx", input_name="score", factor=2.0)
    server = start_own_server(tmp_path, "classifier:v1:lexicon")
    try:
        headers = own_headers("acme", path, sha, format="head", base="classifier/v1")
        base = server.infer("/v2/models/classifier/infer", text_request("great day", "awful day"))
        head = server.infer("/v2/models/doubler/infer", text_request("great day", "awful day"), headers=headers)
        assert head.status == 200, head.body
        scores = next(o for o in base.body["outputs"] if o["name"] == "score")["data"]
        doubled = (np.array(scores, dtype=np.float32) * np.float32(2)).tolist()  # the head computes in FP32
        assert head.body["outputs"] == [{"name": "scaled", "shape": [2], "datatype": "FP32", "data": doubled}]
        assert head.body["model_name"] == "doubler"
        metadata = server.get("/v2/models/doubler", headers=headers).body
        assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert metadata["outputs"] == [{"name": "scaled", "datatype": "FP32", "shape": [-1]}]
        assert metadata["base"] == "classifier/v1"
    finally:
        server.stop()


def test_head_over_the_embedder_answers_what_onnxruntime_computes_on_the_embedding(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "intent.onnx", n_in=384, n_out=3, seed=5)
    server = start_own_server(tmp_path, "embedder:v1:minilm")
    try:
        texts = ("refund my order", "where is my parcel")
        embedding = server.infer("/v2/models/embedder/infer", text_request(*texts)).body["outputs"][0]
        vectors = np.array(embedding["data"], dtype=np.float32).reshape(embedding["shape"])
        expected = onnx_graphs.run(path, {"x": vectors})
        headers = own_headers("globex", path, sha, format="head", base="embedder/v1")
        reply = server.infer("/v2/models/intent/infer", text_request(*texts), headers=headers)
        assert reply.status == 200, reply.body
        outputs = {o["name"]: o for o in reply.body["outputs"]}
        np.testing.assert_allclose(
            np.array(outputs["probabilities"]["data"]).reshape(2, 3), expected["probabilities"], rtol=1e-5, atol=1e-6
        )
        assert outputs["label"]["data"] == expected["label"].tolist()
        assert int(reply.headers["x-fairshare-cost-tokens"]) > 0  # the base's tokenizer counted them
    finally:
        server.stop()


def test_a_head_that_does_not_fit_its_base_fails_naming_both_shapes(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "wrong.onnx", n_in=300, n_out=2)
    server = start_own_server(tmp_path, "embedder:v1:minilm")
    try:
        reply = server.infer(
            "/v2/models/intent/infer",
            text_request("hi"),
            headers=own_headers("globex", path, sha, format="head", base="embedder/v1"),
        )
        assert reply.status == 503
        assert "head input 'x' expects FP32 [n, 300]" in reply.error
        assert "base model 'embedder/v1' outputs 'embedding' as FP32 [n, 384]" in reply.error
        assert server.row("globex:intent")["state"] == "failed"
    finally:
        server.stop()


def test_a_base_this_replica_does_not_serve_is_a_503_naming_it(tmp_path: Path) -> None:
    path, sha = onnx_graphs.scale(tmp_path / "h.onnx")
    server = start_own_server(tmp_path, "classifier:v1:lexicon")
    try:
        reply = server.infer(
            "/v2/models/intent/infer",
            text_request("hi"),
            headers=own_headers("globex", path, sha, format="head", base="embedder/v1"),
        )
        assert reply.status == 503
        assert "base model 'embedder/v1'" in reply.error and "not served by this replica" in reply.error
        # Refused before any load was attempted.
        assert not [r for r in server.index() if r["name"] == "globex:intent"]
    finally:
        server.stop()


class CountingBase:
    """A base model that records the rows of each forward pass: text -> embedding [n, 2]."""

    platform = "test"
    inputs = (TensorSpec("text", "BYTES", (ANY_DIM,)),)
    outputs = (TensorSpec("embedding", "FP32", (ANY_DIM, 2)),)
    device = "cpu"
    calls: list[int] = []
    lock = threading.Lock()

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version

    def load(self) -> None:
        pass

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        texts = inputs["text"].data
        with self.lock:
            CountingBase.calls.append(len(texts))
        data = [float(v) for text in texts for v in (len(text), 1.0)]
        return [Tensor("embedding", "FP32", (len(texts), 2), data)]

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        return float(len(inputs["text"].data))


def test_the_base_is_batched_across_tenants_then_each_head_runs(tmp_path: Path) -> None:
    loaders = default_loaders()
    loaders.register("counting", CountingBase)
    assert isinstance(loaders, LoaderRegistry)
    acme_head, acme_sha = onnx_graphs.linear(tmp_path / "acme.onnx", n_in=2, n_out=2, seed=1)
    globex_head, globex_sha = onnx_graphs.linear(tmp_path / "globex.onnx", n_in=2, n_out=4, seed=2)
    server = start_own_server(
        tmp_path, "base:v1:counting", loaders=loaders, batch_limits=(("base", BatchLimit(8, 1.0)),)
    )
    try:
        heads = {
            "acme": own_headers("acme", acme_head, acme_sha, format="head", base="base/v1"),
            "globex": own_headers("globex", globex_head, globex_sha, format="head", base="base/v1"),
        }
        for headers in heads.values():  # warm both heads, so the three requests below meet in one batch
            assert server.get("/v2/models/intent/ready", headers=headers).status == 200
        CountingBase.calls.clear()
        requests = [
            ("/v2/models/intent/infer", text_request("ab"), heads["acme"]),
            ("/v2/models/intent/infer", text_request("abcd"), heads["globex"]),
            ("/v2/models/base/infer", text_request("abc"), {"x-fairshare-tenant": "initech"}),
        ]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda r: server.infer(*r), requests))
        assert [r.status for r in replies] == [200, 200, 200]
        assert CountingBase.calls == [3]  # one forward pass of the base for three tenants
        for reply, (path, length) in zip(replies[:2], [(acme_head, 2), (globex_head, 4)], strict=True):
            logits = next(o for o in reply.body["outputs"] if o["name"] == "logits")
            expected = onnx_graphs.run(path, {"x": np.array([[length, 1.0]], dtype=np.float32)})["logits"]
            np.testing.assert_allclose(np.array(logits["data"]).reshape(logits["shape"]), expected, rtol=1e-6)
        assert replies[2].body["outputs"][0]["data"] == [3.0, 1.0]
    finally:
        server.stop()


@pytest.mark.parametrize("base", ["embedder", "embedder/", "/v1", "a/b/c"])
def test_a_malformed_base_header_is_a_400_naming_it(tmp_path: Path, base: str) -> None:
    path, sha = onnx_graphs.scale(tmp_path / "h.onnx")
    server = start_own_server(tmp_path, "classifier:v1:lexicon")
    try:
        reply = server.infer(
            "/v2/models/h/infer", text_request("x"), headers=own_headers("acme", path, sha, format="head", base=base)
        )
        assert reply.status == 400 and "NAME/VERSION" in reply.error
    finally:
        server.stop()
