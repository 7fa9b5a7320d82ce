"""What a request really cost in tokens, reported to the gateway as ``x-fairshare-cost-tokens``.

The gateway reserves a cost-based rate limit up front and settles it against this count. A model that
knows its tokens (a tokenizer) says so through ``count_tokens``; for any other text model a token is a
word. Counting runs on the model worker thread, beside ``predict``: tokenizers are not safe to call
from two threads at once, and the count then costs the tenant's own worker time, not the event loop's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from inference_images.runtime.models.base import Model, Tensor

_WORD_RE = re.compile(r"\w+")


@runtime_checkable
class TokenCounting(Protocol):
    def count_tokens(self, inputs: Mapping[str, Tensor]) -> int: ...


@dataclass(frozen=True, slots=True)
class Prediction:
    outputs: list[Tensor]
    tokens: int


def count_tokens(model: Model, inputs: Mapping[str, Tensor]) -> int:
    if isinstance(model, TokenCounting):
        return model.count_tokens(inputs)
    return sum(
        len(_WORD_RE.findall(item if isinstance(item, str) else str(item)))
        for tensor in inputs.values()
        if tensor.datatype == "BYTES"
        for item in tensor.data
    )


def predict(model: Model, inputs: Mapping[str, Tensor]) -> Prediction:
    """``model.predict`` and the token count of its inputs (on the worker thread)."""
    return Prediction(model.predict(inputs), count_tokens(model, inputs))
