"""Tiny real ONNX graphs for the runtime's format and cache tests, built with ``onnx.helper``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(model: onnx.ModelProto, path: Path) -> tuple[Path, str]:
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def linear(path: Path, n_in: int = 4, n_out: int = 3, seed: int = 0, softmax: bool = True) -> tuple[Path, str]:
    """FP32 ``x`` [N, n_in] -> ``logits`` [N, n_out] (x @ W + b) and ``probabilities`` (softmax), and
    INT64 ``label`` [N] (argmax): a classifier head or a small network, random but seeded weights."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_out]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        outputs.insert(1, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_out]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])], outputs, [weights, bias]
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def scale(path: Path, input_name: str = "score", factor: float = 2.0) -> tuple[Path, str]:
    """FP32 ``input_name`` [N] -> ``scaled`` [N] (times ``factor``): a head over a per-row score."""
    k = numpy_helper.from_array(np.array(factor, dtype=np.float32), "k")
    graph = helper.make_graph(
        [helper.make_node("Mul", [input_name, "k"], ["scaled"])],
        "scale",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["N"])],
        [k],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def sized(path: Path, n_bytes: int, seed: int = 0) -> tuple[Path, str]:
    """A graph holding about ``n_bytes`` of weights: FP32 ``x`` [N, 1] -> ``y`` [N, k]."""
    k = max(n_bytes // 4, 1)
    return linear(path, n_in=1, n_out=k, seed=seed, softmax=False)


def run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What onnxruntime itself computes for ``feeds``: the reference answers are compared against."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))
