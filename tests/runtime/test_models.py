"""Models and registries without HTTP: the lexicon's behaviour, loader lookup, version order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference_images.runtime.models.base import Model, Tensor
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.minilm import MiniLMEmbedder
from inference_images.runtime.models.registry import (
    ModelNotFoundError,
    ModelRepository,
    ModelSpec,
    default_loaders,
    version_key,
)

REPO = Path(__file__).resolve().parents[2]


def classify(model: LexiconSentimentModel, *texts: str) -> list[tuple[str, float]]:
    label, score = model.predict({"text": Tensor("text", "BYTES", (len(texts),), list(texts))})
    return list(zip(label.data, score.data, strict=True))


def test_lexicon_plain_vs_negation() -> None:
    plain = LexiconSentimentModel("c", "v1", negation=False)
    negation = LexiconSentimentModel("c", "v2", negation=True)
    assert classify(plain, "not good")[0][0] == "positive"
    assert classify(negation, "not good")[0][0] == "negative"
    assert classify(negation, "I don't hate it")[0][0] == "positive"
    # Punctuation ends the negation's scope: "not bad, but terrible" stays negative overall.
    assert classify(negation, "not bad, but terrible")[0][0] == "negative"
    # An intensifier makes the same sentiment stronger.
    assert classify(negation, "very good")[0][1] > classify(negation, "good")[0][1]


def test_lexicon_is_deterministic_and_bounded() -> None:
    model = LexiconSentimentModel("c", "v2", negation=True)
    texts = ["great great great great great great great", "", "Awful!!! WORST ever", "meh"]
    first = classify(model, *texts)
    assert first == classify(model, *texts)
    assert all(-1 < score < 1 for _, score in first)
    assert [label for label, _ in first] == ["positive", "neutral", "negative", "neutral"]


def test_models_meet_the_protocol() -> None:
    assert isinstance(LexiconSentimentModel("c", "v1", negation=False), Model)
    assert isinstance(MiniLMEmbedder("e", "v1", normalize=False), Model)


def test_model_spec_parsing() -> None:
    assert ModelSpec.parse("embedder:v1:minilm") == ModelSpec("embedder", "v1", "minilm")
    for bad in ("embedder:v1", "a:b:c:d", "embed der:v1:minilm", ":v1:minilm", "e:v/1:minilm"):
        with pytest.raises(ValueError):
            ModelSpec.parse(bad)


def test_loaders_by_name() -> None:
    assert default_loaders().names() == [
        "lexicon", "lexicon-negation", "lexicon-simulated", "minilm", "minilm-normalized", "onnx"
    ]
    with pytest.raises(KeyError, match="unknown loader 'tflite'"):
        default_loaders().create(ModelSpec("m", "v1", "tflite"))
    with pytest.raises(ValueError, match="registered"):
        default_loaders().register("lexicon", lambda n, v: LexiconSentimentModel(n, v, negation=False))


def test_repository_resolves_versions_in_natural_order() -> None:
    specs = [ModelSpec("c", v, "lexicon") for v in ("v2", "v10", "v9")]
    repository = ModelRepository(specs, default_loaders())
    assert repository.versions("c") == ["v2", "v9", "v10"]
    assert repository.resolve("c").spec.version == "v10"
    assert repository.resolve("c", "v9").spec.version == "v9"
    with pytest.raises(ModelNotFoundError, match="unknown version 'v3'"):
        repository.resolve("c", "v3")
    with pytest.raises(ModelNotFoundError, match="unknown model 'x'"):
        repository.resolve("x")
    assert version_key("2024-01") < version_key("2024-02")


def test_repository_refuses_duplicates_and_an_empty_one_is_ready() -> None:
    with pytest.raises(ValueError, match="twice"):
        ModelRepository([ModelSpec("c", "v1", "lexicon")] * 2, default_loaders())
    # A replica of a pool that hosts only tenants' own models has no catalog model to wait for.
    empty = ModelRepository([], default_loaders())
    assert empty.is_ready() and empty.not_ready() == {}
    with pytest.raises(ModelNotFoundError, match="no catalog models"):
        empty.resolve("c")


def test_light_process_never_imports_torch() -> None:
    # Building and loading the light model, loaders for the heavy one included, must not import torch.
    code = (
        "import sys\n"
        "from inference_images.runtime.__main__ import parse_settings\n"
        "from inference_images.runtime.models.registry import ModelRepository, default_loaders\n"
        "s, _ = parse_settings(['--region', 'r', '--pool', 'p', '--model', 'c:v1:lexicon'])\n"
        "repo = ModelRepository(s.models, default_loaders())\n"
        "repo.load_all()\n"
        "assert repo.is_ready()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
