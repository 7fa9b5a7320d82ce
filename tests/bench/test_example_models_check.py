"""`bench.example_models.train --check`: a committed model reproduces when retraining gives the same bytes,
or the same graph with weights a CPU's rounding apart; anything more is a model that changed."""

from __future__ import annotations

from pathlib import Path

import onnx

from bench.example_models.train import WEIGHT_TOLERANCE, reproduces

COMMITTED = Path(__file__).resolve().parents[2] / "config" / "models" / "acme" / "ticket-router" / "1" / "model.onnx"


def _nudged(delta: float) -> bytes:
    model = onnx.load(COMMITTED)
    (node,) = [n for n in model.graph.node if n.op_type == "LinearClassifier"]
    coefficients = next(a for a in node.attribute if a.name == "coefficients")
    coefficients.floats[0] += delta
    return model.SerializeToString()


def test_identical_bytes_and_rounding_reproduce_and_a_changed_weight_does_not() -> None:
    data = COMMITTED.read_bytes()
    assert reproduces(data, data, "m.onnx") == "identical"
    assert reproduces(data, _nudged(WEIGHT_TOLERANCE / 10), "m.onnx") is not None
    assert reproduces(data, _nudged(1e-2), "m.onnx") is None
    assert reproduces(None, data, "m.onnx") is None
    assert reproduces(b"{}", b"{ }", "features.json") is None  # not a graph: bytes or nothing


def test_a_changed_graph_does_not_reproduce() -> None:
    model = onnx.load(COMMITTED)
    model.graph.node[-1].name = model.graph.node[-1].name + "-renamed"
    assert reproduces(COMMITTED.read_bytes(), model.SerializeToString(), "m.onnx") is None
