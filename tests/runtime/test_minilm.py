"""The real all-MiniLM-L6-v2 behind the HTTP API: 384-d embeddings that put similar sentences closer."""

from __future__ import annotations

import numpy as np
import pytest

from inference_images.runtime.models import minilm
from tests.runtime.conftest import start_server, text_request

pytestmark = pytest.mark.slow


def embeddings(reply_body: dict) -> np.ndarray:  # type: ignore[type-arg]
    (output,) = reply_body["outputs"]
    assert output["name"] == "embedding" and output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def test_minilm_embeddings_through_the_server() -> None:
    server = start_server("embedder:v1:minilm", "embedder:v2:minilm-normalized", "classifier:v1:lexicon")
    try:
        server.wait_ready(120)
        texts = ("A man is playing a guitar.", "Someone is playing an instrument.", "Stock markets fell sharply today.")

        raw_reply = server.infer("/v2/models/embedder/versions/v1/infer", text_request(*texts))
        assert raw_reply.status == 200, raw_reply.body
        raw = embeddings(raw_reply.body)
        assert raw.shape == (3, 384)

        unit_reply = server.infer("/v2/models/embedder/infer", text_request(*texts))
        assert unit_reply.body["model_version"] == "v2"
        unit = embeddings(unit_reply.body)
        np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
        # v1 is the same vectors before normalisation: one set of weights serves both versions.
        assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-2)
        np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-5)
        assert len(minilm._encoders) == 1

        similar, unrelated = float(unit[0] @ unit[1]), float(unit[0] @ unit[2])
        assert similar > unrelated + 0.2, (similar, unrelated)

        empty = server.infer("/v2/models/embedder/infer", text_request())
        assert empty.status == 200 and empty.body["outputs"][0]["shape"] == [0, 384]

        metadata = server.get("/v2/models/embedder").body
        assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    finally:
        server.stop()
