"""Readiness follows loading: 503 with reasons while loading or after a failure, 200 once all loaded."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

import pytest

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.registry import LoaderRegistry, default_loaders
from tests.runtime.conftest import start_server, text_request


class GatedModel(LexiconSentimentModel):
    """Loads only when the test opens the gate."""

    gate = threading.Event()

    def load(self) -> None:
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")


class BrokenModel(LexiconSentimentModel):
    def load(self) -> None:
        raise FileNotFoundError("weights file /models/broken.safetensors is missing")

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:  # pragma: no cover - must not run
        raise AssertionError("predict on a model that failed to load")


def loaders() -> LoaderRegistry:
    registry = default_loaders()
    registry.register("gated", lambda name, version: GatedModel(name, version, negation=False))
    registry.register("broken", lambda name, version: BrokenModel(name, version, negation=False))
    return registry


def test_not_ready_until_loaded_then_ready() -> None:
    GatedModel.gate.clear()
    server = start_server("slow:v1:gated", "classifier:v1:lexicon", loaders=loaders())
    try:
        # Live at once, while the model loads.
        assert server.get("/v2/health/live").status == 200
        # The loader thread starts just after the listener: until it picks the slow model up, every model
        # is pending. Wait for the load to begin (the gate holds it there), never for a fixed time.
        deadline = time.monotonic() + 10
        while (ready := server.get("/v2/health/ready")).body["reasons"]["slow:v1"] == "pending":
            assert time.monotonic() < deadline, "the slow model's load never started"
            time.sleep(0.01)
        assert ready.status == 503
        assert ready.body["ready"] is False
        assert ready.body["reasons"]["slow:v1"] == "loading"
        # Models after the slow one have not been loaded yet: pending, and they say so.
        assert ready.body["reasons"]["classifier:v1"] == "pending"
        model_ready = server.get("/v2/models/slow/ready")
        assert model_ready.status == 503 and model_ready.body["reason"] == "loading"
        infer = server.infer("/v2/models/slow/infer", text_request("x"))
        assert infer.status == 503 and "not ready" in infer.error

        GatedModel.gate.set()
        server.wait_ready(5)
        assert server.get("/v2/models/slow/ready").status == 200
        assert server.infer("/v2/models/slow/infer", text_request("x")).status == 200
    finally:
        GatedModel.gate.set()
        server.stop()


def test_a_failed_load_keeps_the_replica_not_ready_with_the_reason() -> None:
    server = start_server("classifier:v1:lexicon", "bad:v1:broken", loaders=loaders())
    try:
        # The healthy model still loads, so the failure is the only reason left.
        for _ in range(200):
            reasons = server.get("/v2/health/ready").body.get("reasons", {})
            if reasons.get("bad:v1", "").startswith("failed"):
                break
            threading.Event().wait(0.01)
        ready = server.get("/v2/health/ready")
        assert ready.status == 503
        assert ready.body["reasons"] == {
            "bad:v1": "failed: FileNotFoundError: weights file /models/broken.safetensors is missing"
        }
        assert server.get("/v2/models/classifier/ready").status == 200
        assert server.infer("/v2/models/classifier/infer", text_request("x")).status == 200
        failed = server.infer("/v2/models/bad/infer", text_request("x"))
        assert failed.status == 503 and "weights file" in failed.error
        metrics = server.get("/metrics").body
        assert 'fairshare_runtime_model_ready{model="bad",version="v1"} 0.0' in metrics
    finally:
        server.stop()


class CrashingModel(LexiconSentimentModel):
    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        # Exceptions may quote the input; the server must not pass it on to clients or logs.
        raise ValueError(f"cannot handle {inputs['text'].data[0]}")


def test_a_model_error_is_500_without_leaking_the_input(caplog: pytest.LogCaptureFixture) -> None:
    registry = loaders()
    registry.register("crashing", lambda name, version: CrashingModel(name, version, negation=False))
    server = start_server("crash:v1:crashing", loaders=registry)
    try:
        server.wait_ready(5)
        with caplog.at_level(logging.INFO):
            reply = server.infer("/v2/models/crash/infer", text_request("secret-payload-42"))
        assert reply.status == 500
        assert reply.error == "inference failed in model 'crash' version 'v1'"
        assert "secret-payload-42" not in caplog.text
        assert any(getattr(r, "error_type", None) == "ValueError" for r in caplog.records)
        # The worker survives a failed prediction.
        assert server.get("/v2/health/ready").status == 200
    finally:
        server.stop()
