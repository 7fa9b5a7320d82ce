"""The light model: a deterministic word-lexicon sentiment classifier.

It stands for the cheap end of the workload mix (microseconds per text, no torch), so fairness tests can
pit light tenants against heavy embedding tenants. Two loaders:

- ``lexicon``: sums word polarities.
- ``lexicon-negation``: also flips a sentiment word that follows a negator ("not good") within a short
  scope that punctuation ends, and scales words after an intensifier ("very good").

Output ``score`` is a signed confidence in (-1, 1): tanh of half the summed polarity. ``label`` is
``positive`` / ``negative`` by its sign, ``neutral`` at exactly zero (no sentiment words, or a tie).

The word polarities are built in; an artefact (``--artifact``) replaces them with a JSON file
``{"polarity": {"word": number, ...}}`` (or a directory or archive holding ``lexicon.json``), so a tenant's
domain lexicon ships like any model's weights: from a path or S3, checked against its sha256.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from inference_images.runtime.models.base import ANY_DIM, LoadOptions, RequestLimits, Tensor, TensorSpec

if TYPE_CHECKING:
    from inference_images.runtime.models.registry import LoaderRegistry

_POLARITY: dict[str, float] = {
    # positive
    "good": 1.0, "great": 1.5, "excellent": 2.0, "amazing": 2.0, "awesome": 2.0, "fantastic": 2.0,
    "wonderful": 2.0, "love": 1.5, "loved": 1.5, "loves": 1.5, "like": 0.5, "liked": 0.5, "nice": 1.0,
    "happy": 1.5, "glad": 1.0, "pleased": 1.0, "best": 1.5, "better": 1.0, "fast": 0.5, "helpful": 1.0,
    "perfect": 2.0, "recommend": 1.0, "reliable": 1.0, "enjoy": 1.0, "enjoyed": 1.0, "fine": 0.5,
    "brilliant": 2.0, "delightful": 1.5, "superb": 2.0, "satisfied": 1.0, "works": 0.5, "thanks": 0.5,
    # negative
    "bad": -1.0, "terrible": -2.0, "awful": -2.0, "horrible": -2.0, "worst": -2.0, "worse": -1.0,
    "hate": -1.5, "hated": -1.5, "hates": -1.5, "poor": -1.0, "sad": -1.0, "angry": -1.5, "slow": -0.5,
    "broken": -1.5, "useless": -1.5, "disappointing": -1.5, "disappointed": -1.5, "annoying": -1.0,
    "fail": -1.0, "failed": -1.0, "fails": -1.0, "bug": -0.5, "buggy": -1.0, "crash": -1.0,
    "crashes": -1.0, "expensive": -0.5, "refund": -0.5, "rude": -1.5, "dislike": -1.0, "wrong": -1.0,
}  # fmt: skip

_NEGATORS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "without", "hardly"}
)
_INTENSIFIERS: dict[str, float] = {"very": 1.5, "really": 1.5, "extremely": 2.0, "so": 1.3, "super": 1.5}
# How many words after a negator it still reaches ("not at all good" is 3 away).
_NEGATION_SCOPE = 3
# Words, and clause punctuation that ends a negation's scope.
_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:!?]")
_SCOPE_BREAKS = frozenset(".,;:!?")
# A few microseconds per short text: 8,192 texts are milliseconds of work, and 4 MiB of text (about a
# second of scanning, and of PII redaction before it) bounds the long ones.
LIMITS = RequestLimits(max_rows=8192, max_bytes=4 * 1024 * 1024, chunk_rows=2048)


def _polarity_plain(tokens: list[str], table: Mapping[str, float]) -> float:
    return sum(table.get(token, 0.0) for token in tokens)


def _polarity_with_negation(tokens: list[str], table: Mapping[str, float]) -> float:
    total = 0.0
    negation_left = 0  # words still inside the current negator's scope
    boost = 1.0
    for token in tokens:
        if token in _SCOPE_BREAKS:
            negation_left, boost = 0, 1.0
            continue
        if token in _NEGATORS or token.endswith("n't"):
            negation_left = _NEGATION_SCOPE
            continue
        if token in _INTENSIFIERS:
            boost *= _INTENSIFIERS[token]
            continue
        polarity = table.get(token, 0.0)
        if polarity:
            total += -polarity * boost if negation_left else polarity * boost
            negation_left, boost = 0, 1.0  # a negator or intensifier applies to one sentiment word
        elif negation_left:
            negation_left -= 1
    return total


class LexiconSentimentModel:
    """Sentiment of each text in a batch: BYTES ``text`` [n] -> BYTES ``label`` [n], FP32 ``score`` [n]."""

    platform = "fairshare-lexicon"
    inputs = (TensorSpec("text", "BYTES", (ANY_DIM,)),)
    outputs = (TensorSpec("label", "BYTES", (ANY_DIM,)), TensorSpec("score", "FP32", (ANY_DIM,)))
    device = "cpu"
    request_limits = LIMITS

    def __init__(self, name: str, version: str, *, negation: bool) -> None:
        self.name = name
        self.version = version
        self._polarity: Callable[[list[str], Mapping[str, float]], float] = (
            _polarity_with_negation if negation else _polarity_plain
        )
        self._table: Mapping[str, float] = _POLARITY
        self._artifact: Path | None = None

    def configure(self, options: LoadOptions) -> None:
        if options.device not in (None, "auto", "cpu"):
            raise ValueError(f"the lexicon model runs on the CPU only; device {options.device!r} cannot be honoured")
        self._artifact = options.artifact

    def load(self) -> None:
        """The built-in lexicon is code; an artefact's lexicon is read and checked here."""
        if self._artifact is not None:
            self._table = read_lexicon(self._artifact)

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        texts = inputs["text"].data
        labels: list[str] = []
        scores: list[float] = []
        for text in texts:
            score = math.tanh(self._polarity(_TOKEN_RE.findall(text.lower()), self._table) / 2.0)
            scores.append(score)
            labels.append("positive" if score > 0 else "negative" if score < 0 else "neutral")
        n = len(texts)
        return [Tensor("label", "BYTES", (n,), labels), Tensor("score", "FP32", (n,), scores)]

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        # Work is linear in characters scanned.
        return float(sum(len(text) for text in inputs["text"].data))


def read_lexicon(path: Path) -> dict[str, float]:
    """Word polarities from a lexicon artefact; every problem names the file and the field."""
    if path.is_dir():
        path = path / "lexicon.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path.name}: not found in the artifact (a lexicon artifact holds lexicon.json)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path.name}: not a JSON lexicon: {exc}") from None
    table = doc.get("polarity") if isinstance(doc, dict) else None
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path.name}: field 'polarity' must be a non-empty object of word -> number")
    out: dict[str, float] = {}
    for word, value in table.items():
        if not re.fullmatch(r"[a-z]+(?:'[a-z]+)?", word):
            raise ValueError(f"{path.name}: field 'polarity': {word!r} is not a lower-case word")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{path.name}: field 'polarity.{word}' must be a finite number")
        out[word] = float(value)
    return out


def register(registry: LoaderRegistry) -> None:
    registry.register("lexicon", lambda name, version: LexiconSentimentModel(name, version, negation=False))
    registry.register("lexicon-negation", lambda name, version: LexiconSentimentModel(name, version, negation=True))
