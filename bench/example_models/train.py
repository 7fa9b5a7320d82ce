"""Train the example config's own models from tickets.tsv and export them with skl2onnx.

    .venv/bin/python -m bench.example_models.train [--out config/models] [--check]

Two tenants' models, both real training runs on the same 200 labelled support tickets
(billing / shipping / technical / account):

- acme `ticket-router` (format `onnx`, tensors in, tensors out): LogisticRegression over keyword counts.
  Input `features` FP32 [n, F] (F = the vocabulary in features.json, counted the way `featurize` does);
  outputs `label` INT64 [n] (an index into features.json's `classes`) and `probabilities` FP32 [n, 4].
  Version 1 and version 2 (stronger regularisation) have the same signature, for a canary split.
- globex `intent` (format `head` over `embedder/v1`): LogisticRegression over the 384-d MiniLM
  embeddings of the same lines, computed by the runtime's own embedder loader (so the head sees exactly
  the vectors the platform's base produces). Input `embedding` FP32 [n, 384]; same outputs.

The files are small (a few KB) and committed; their sha256 are in config/tenants/{acme,globex}.yaml.
Everything is seeded and single-threaded, so a rerun with the pinned packages writes the same bytes;
`--check` retrains in memory and fails unless each committed artifact is what it retrains to: the same
bytes, or (another CPU's floating point) the same graph with weights within 1e-5.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = HERE / "tickets.tsv"
DEFAULT_OUT = REPO / "config" / "models"
CLASSES = ("billing", "shipping", "technical", "account")
VOCABULARY_SIZE = 96
# ai.onnx 17 and ai.onnx.ml 3: what onnxruntime has run for years; pinned so the bytes do not drift.
OPSET = {"": 17, "ai.onnx.ml": 3}
_TOKEN = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Artifact:
    relative: str  # under the output folder
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def load_tickets(path: Path = DATA) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    texts = [r["text"] for r in rows]
    labels = np.array([CLASSES.index(r["label"]) for r in rows], dtype=np.int64)
    return texts, labels


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def vocabulary(texts: list[str], labels: np.ndarray) -> list[str]:
    """The words that best tell the classes apart: for each class, the words most over-represented in
    it (count in class minus mean count elsewhere), round-robin, ties broken alphabetically."""
    counts: dict[str, np.ndarray] = {}
    for text, label in zip(texts, labels, strict=True):
        for tok in set(tokens(text)):
            counts.setdefault(tok, np.zeros(len(CLASSES)))[label] += 1
    ranked = []
    for c in range(len(CLASSES)):
        score = {w: v[c] - (v.sum() - v[c]) / (len(CLASSES) - 1) for w, v in counts.items() if len(w) > 2}
        ranked.append(sorted(score, key=lambda w: (-score[w], w)))
    vocab: list[str] = []
    i = 0
    while len(vocab) < VOCABULARY_SIZE:
        for ranking in ranked:
            if i < len(ranking) and ranking[i] not in vocab and len(vocab) < VOCABULARY_SIZE:
                vocab.append(ranking[i])
        i += 1
    return sorted(vocab)


def featurize(texts: list[str], vocab: list[str]) -> np.ndarray:
    """Keyword counts, the ticket router's input (a client computes the same from features.json)."""
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for row, text in enumerate(texts):
        for tok in tokens(text):
            if tok in index:
                out[row, index[tok]] += 1.0
    return out


def embed(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings as embedder/v1 serves them (the runtime's `minilm` loader, raw mean pooling)."""
    import torch

    from inference_images.runtime.models.base import Tensor
    from inference_images.runtime.models.minilm import EMBEDDING_DIM, MiniLMEmbedder

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = MiniLMEmbedder("embedder", "v1", normalize=False, device="cpu")
    model.load()
    (out,) = model.predict({"text": Tensor("text", "BYTES", (len(texts),), texts)})
    return np.asarray(out.data, dtype=np.float32).reshape(len(texts), EMBEDDING_DIM)


def export(model: object, input_name: str, width: int) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[(input_name, FloatTensorType([None, width]))],
                  options={id(model): {"zipmap": False}}, target_opset=OPSET)
    onx.doc_string = "Fairshare example model: bench/example_models/train.py"
    data: bytes = onx.SerializeToString()
    return data


def train() -> list[Artifact]:
    from sklearn.linear_model import LogisticRegression

    texts, labels = load_tickets()
    vocab = vocabulary(texts, labels)
    x = featurize(texts, vocab)
    out: list[Artifact] = []
    for version, c in (("1", 1.0), ("2", 0.3)):
        router = LogisticRegression(C=c, max_iter=2000, random_state=0).fit(x, labels)
        out.append(Artifact(f"acme/ticket-router/{version}/model.onnx", export(router, "features", len(vocab))))
    features = {"input": "features", "vocabulary": vocab, "classes": list(CLASSES),
                "featurize": "count of each vocabulary word in the lower-cased text (words: [a-z]+)"}
    out.append(Artifact("acme/ticket-router/features.json", (json.dumps(features, indent=1) + "\n").encode()))
    head = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(embed(texts), labels)
    out.append(Artifact("globex/intent/1/model.onnx", export(head, "embedding", 384)))
    out.append(Artifact("globex/intent/classes.json", (json.dumps({"classes": list(CLASSES)}) + "\n").encode()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the artifacts go (default: config/models)")
    parser.add_argument("--check", action="store_true", help="retrain and compare with what --out holds; write nothing")
    args = parser.parse_args(argv)
    artifacts = train()
    differ = []
    for a in artifacts:
        path = args.out / a.relative
        if args.check:
            committed = path.read_bytes() if path.is_file() else None
            verdict = reproduces(committed, a.data, a.relative)
            if verdict is None:
                differ.append(str(path))
                verdict = "differs"
            digest = hashlib.sha256(committed).hexdigest() if committed is not None else "missing"
            print(f"{digest}  {path} ({len(a.data)} bytes): {verdict}"
                  + (f" (retrained: {a.sha256})" if digest != a.sha256 else ""))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(a.data)
            print(f"{a.sha256}  {path} ({len(a.data)} bytes)")
    if differ:
        print(f"error: retraining does not reproduce {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


# How far a retrained weight may be from the committed one: lbfgs's last steps round differently on
# another CPU's BLAS (seen: 2e-6 on an AMD EPYC against the machine that trained them).
WEIGHT_TOLERANCE = 1e-5


def reproduces(committed: bytes | None, retrained: bytes, relative: str) -> str | None:
    """How the retrained artifact matches the committed one ("identical", or the same graph with weights
    within WEIGHT_TOLERANCE), or None where it does not."""
    if committed == retrained:
        return "identical"
    if committed is None or not relative.endswith(".onnx"):
        return None
    import onnx
    from onnx import numpy_helper

    def split(data: bytes) -> tuple[bytes, list[np.ndarray]]:
        """The graph with its weights taken out, and the weights: initializers, and float attributes
        (skl2onnx's LinearClassifier keeps its coefficients and intercepts there)."""
        model = onnx.load_from_string(data)
        weights = [numpy_helper.to_array(t) for t in model.graph.initializer]
        del model.graph.initializer[:]
        for node in model.graph.node:
            for attr in node.attribute:
                if attr.floats:
                    weights.append(np.asarray(attr.floats, dtype=np.float32))
                    del attr.floats[:]
                if attr.type == onnx.AttributeProto.FLOAT:
                    weights.append(np.asarray([attr.f], dtype=np.float32))
                    attr.f = 0.0
        return model.SerializeToString(deterministic=True), weights

    (graph_a, weights_a), (graph_b, weights_b) = split(committed), split(retrained)
    if graph_a != graph_b or len(weights_a) != len(weights_b):
        return None
    for a, b in zip(weights_a, weights_b, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            return None
        same = (np.allclose(a, b, rtol=WEIGHT_TOLERANCE, atol=WEIGHT_TOLERANCE) if a.dtype.kind == "f"
                else np.array_equal(a, b))
        if not same:
            return None
    return f"the same graph, weights within {WEIGHT_TOLERANCE:g} (this CPU's floating point)"


if __name__ == "__main__":
    sys.exit(main())
