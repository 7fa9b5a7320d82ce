"""Redaction at the model's edge: the text tensors of a request before the model, and of a response after.

Only BYTES tensors carry text; numbers (embeddings, scores) pass through untouched. A request is checked
whole before anything is changed, so a blocked entity anywhere refuses the request and the model never
sees any of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.pii.entities import Entity
from inference_images.runtime.pii.pseudonyms import Pseudonymiser
from inference_images.runtime.pii.redactor import PiiBlockedError, redact
from inference_images.runtime.pii.rules import PiiRules


def redact_inputs(inputs: Mapping[str, Tensor], rules: PiiRules,
                  pseudonyms: Pseudonymiser | None = None) -> tuple[dict[str, Tensor], Counter[Entity]]:
    """The inputs with the rules applied (``pseudonyms``: the tenant's key, when the rules pseudonymise),
    and how many of each type were replaced.

    Raises ``PiiBlockedError`` naming the input and the blocked types when any text holds one.
    """
    counts: Counter[Entity] = Counter()
    if not rules.active:
        return dict(inputs), counts
    out: dict[str, Tensor] = {}
    for name, tensor in inputs.items():
        if tensor.datatype != "BYTES":
            out[name] = tensor
            continue
        texts: list[str] = []
        for text in tensor.data:
            result = redact(text, rules, pseudonyms=pseudonyms)
            if result.blocked:
                raise PiiBlockedError(result.blocked, f"input '{name}'")
            counts.update(result.counts)
            texts.append(result.text)
        out[name] = replace(tensor, data=texts)
    return out, counts


def redact_outputs(outputs: Iterable[Tensor], rules: PiiRules,
                   pseudonyms: Pseudonymiser | None = None) -> tuple[list[Tensor], Counter[Entity]]:
    """A model's outputs with every type the rules name replaced (redact or block: the placeholder;
    pseudonymise: the same pseudonym the input would have had): a response that has been computed cannot
    be refused without wasting the work, and must not carry what the input could not."""
    counts: Counter[Entity] = Counter()
    produced = list(outputs)
    if not rules.active:
        return produced, counts
    out: list[Tensor] = []
    for tensor in produced:
        if tensor.datatype != "BYTES":
            out.append(tensor)
            continue
        texts: list[str] = []
        for text in tensor.data:
            result = redact(text, rules, enforce_block=False, pseudonyms=pseudonyms)
            counts.update(result.counts)
            texts.append(result.text)
        out.append(replace(tensor, data=texts))
    return out, counts


def text_volume(inputs: Mapping[str, Tensor]) -> int:
    """Characters of text across the BYTES inputs: what redaction has to scan."""
    return sum(len(text) for tensor in inputs.values() if tensor.datatype == "BYTES" for text in tensor.data)


def summary(counts: Counter[Entity]) -> str:
    """``email=2,phone=1``: the response header and access-log form of a redaction count."""
    return ",".join(f"{entity.value}={n}" for entity, n in sorted(counts.items()) if n)


def split(counts: Counter[Entity], rules: PiiRules) -> tuple[Counter[Entity], Counter[Entity]]:
    """Replacement counts as (redacted, pseudonymised): the rules give each type one treatment."""
    pseudonymised = Counter({e: n for e, n in counts.items() if e in rules.pseudonymise})
    return counts - pseudonymised, pseudonymised
