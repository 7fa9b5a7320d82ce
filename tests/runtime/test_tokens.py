"""The token cost the runtime reports (x-fairshare-cost-tokens): the tokenizer's count for MiniLM, words
for models without a tokenizer."""

from __future__ import annotations

import pytest

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.minilm import MiniLMEmbedder
from inference_images.runtime.tokens import count_tokens, predict


def texts(*items: str) -> dict[str, Tensor]:
    return {"text": Tensor("text", "BYTES", (len(items),), list(items))}


def test_models_without_a_tokenizer_count_words() -> None:
    model = LexiconSentimentModel("c", "v1", negation=False)
    assert count_tokens(model, texts("I love it, really!", "", "one-two")) == 6
    prediction = predict(model, texts("good day"))
    assert prediction.tokens == 2 and prediction.outputs[0].data == ["positive"]


@pytest.mark.slow
def test_minilm_counts_what_its_tokenizer_produces() -> None:
    model = MiniLMEmbedder("e", "v1", normalize=True, device="cpu")
    model.load()
    # [CLS] hello world [SEP], and [CLS] x * 600 truncated to the model's 256-token window.
    assert count_tokens(model, texts("hello world")) == 4
    assert count_tokens(model, texts("hello world", "x " * 600)) == 4 + 256
    assert count_tokens(model, texts()) == 0
