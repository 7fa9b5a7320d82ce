"""Redaction at the model's edge: the text tensors of a request before the model, and of a response after.

BYTES tensors carry text, and any tensor's ``parameters`` may (the model gets them with the tensor), so
both are scanned; numbers (embeddings, scores) pass through untouched. The request's own ``id`` and
``parameters``, and the names and ``parameters`` of the outputs it asks for, never reach the model or a
log, but are held to the tenant's block all the same (``check_request_fields``): a blocked entity anywhere
in a request refuses it, before anything is changed, so the model never sees any of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.pii.entities import Entity
from inference_images.runtime.pii.pseudonyms import Pseudonymiser
from inference_images.runtime.pii.redactor import PiiBlockedError, redact
from inference_images.runtime.pii.rules import PiiRules

if TYPE_CHECKING:
    from inference_images.runtime.protocol import RequestedOutput


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
        if tensor.parameters:
            parameters = _redact_value(tensor.parameters, rules, pseudonyms, counts, f"input '{name}': its parameters")
            tensor = replace(tensor, parameters=parameters)
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


def check_request_fields(request_id: str | None, parameters: Mapping[str, Any], rules: PiiRules,
                         outputs: Iterable[RequestedOutput] = ()) -> None:
    """PiiBlockedError when the request's ``id`` or ``parameters``, or a requested output's name or
    ``parameters`` (keys and values, at any depth), hold a type the rules block. Nothing is replaced there:
    none reaches the model or a log (an output's parameters only say how it is encoded), and the id goes
    back only to its sender."""
    if not rules.block:
        return
    fields: list[tuple[str, Any]] = [("field 'id'", request_id), ("field 'parameters'", parameters)]
    for output in outputs:
        # The name first: the message about its parameters quotes it.
        fields += [("field 'outputs'", output.name), (f"output '{output.name}': its parameters", output.parameters)]
    for where, value in fields:
        for text in _strings(value):
            blocked = redact(text, rules).blocked
            if blocked:
                raise PiiBlockedError(blocked, where)


def _redact_value(value: Any, rules: PiiRules, pseudonyms: Pseudonymiser | None, counts: Counter[Entity],
                  where: str) -> Any:
    """``value`` (a JSON value: parameters nest) with every string in it, names included, redacted."""
    if isinstance(value, str):
        result = redact(value, rules, pseudonyms=pseudonyms)
        if result.blocked:
            raise PiiBlockedError(result.blocked, where)
        counts.update(result.counts)
        return result.text
    if isinstance(value, Mapping):
        return {_redact_value(k, rules, pseudonyms, counts, where): _redact_value(v, rules, pseudonyms, counts, where)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, rules, pseudonyms, counts, where) for v in value]
    return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (parameters nest at most as deep as the body may, 32 levels)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


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


def text_volume(inputs: Mapping[str, Tensor], *fields: Any) -> int:
    """Characters of text across the BYTES inputs, every input's parameters and ``fields`` (the request's
    id and parameters, the requested outputs' names and parameters): what redaction scans."""
    data = sum(len(text) for tensor in inputs.values() if tensor.datatype == "BYTES" for text in tensor.data)
    values = [*(tensor.parameters for tensor in inputs.values()), *fields]
    return data + sum(len(text) for value in values for text in _strings(value))


def summary(counts: Counter[Entity]) -> str:
    """``email=2,phone=1``: the response header and access-log form of a redaction count."""
    return ",".join(f"{entity.value}={n}" for entity, n in sorted(counts.items()) if n)


def split(counts: Counter[Entity], rules: PiiRules) -> tuple[Counter[Entity], Counter[Entity]]:
    """Replacement counts as (redacted, pseudonymised): the rules give each type one treatment."""
    pseudonymised = Counter({e: n for e, n in counts.items() if e in rules.pseudonymise})
    return counts - pseudonymised, pseudonymised
