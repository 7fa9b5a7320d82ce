"""Text in, text out: replace each finding the rules name with its placeholder (or, for the types the
rules pseudonymise, the tenant's keyed pseudonym), or refuse the text.

``redact`` applies a tenant's rules; ``scrub`` replaces every known type and is what log lines and echoed
error messages go through. Neither ever returns or raises with a matched value: errors and counts name the
entity type only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from inference_images.runtime.pii.entities import Entity, Finding, find
from inference_images.runtime.pii.pseudonyms import Pseudonymiser
from inference_images.runtime.pii.rules import PiiRules

_ALL = frozenset(Entity)


class PiiBlockedError(Exception):
    """Text holding an entity type the tenant's rules block. The message names types, never values."""

    def __init__(self, entities: frozenset[Entity], where: str) -> None:
        self.entities = entities
        self.where = where
        names = ", ".join(sorted(entities))
        super().__init__(f"{where} contains {names}, which this tenant's PII rules do not allow; nothing was processed")


@dataclass(frozen=True, slots=True)
class Redaction:
    text: str
    # Every value replaced, by type (placeholders and pseudonyms: the rules say which type got which).
    counts: Counter[Entity] = field(default_factory=Counter)
    blocked: frozenset[Entity] = frozenset()


def redact(text: str, rules: PiiRules, *, enforce_block: bool = True,
           pseudonyms: Pseudonymiser | None = None) -> Redaction:
    """Redact what ``rules.redact`` names and pseudonymise what ``rules.pseudonymise`` names (with
    ``pseudonyms``, the tenant's key: required when the rules pseudonymise anything). Blocked types are
    reported in ``blocked`` (and, with ``enforce_block=False``, redacted too: a model's output cannot be
    refused, only cleaned)."""
    if not rules.active:
        return Redaction(text)
    if rules.pseudonymise and pseudonyms is None:
        # Fail closed: the caller forgot the key; never pass the values, never guess a weaker form.
        raise ValueError("these PII rules pseudonymise entities but no pseudonymisation key was given")
    findings = find(text, rules.watched)
    if not findings:
        return Redaction(text)
    blocked = frozenset(f.entity for f in findings if f.entity in rules.block)
    if blocked and enforce_block:
        return Redaction(text, Counter(), blocked)
    keyed = (pseudonyms, rules.pseudonymise) if pseudonyms is not None and rules.pseudonymise else None
    return Redaction(_replace(text, findings, keyed), Counter(f.entity for f in findings), blocked)


def scrub(text: str) -> str:
    """``text`` with every known entity type replaced: for log lines and messages that echo input."""
    findings = find(text, _ALL)
    return _replace(text, findings) if findings else text


def _replace(text: str, findings: list[Finding],
             keyed: tuple[Pseudonymiser, frozenset[Entity]] | None = None) -> str:
    parts: list[str] = []
    last = 0
    for finding in findings:
        parts.append(text[last : finding.start])
        if keyed is not None and finding.entity in keyed[1]:
            parts.append(keyed[0].pseudonym(finding.entity, text[finding.start : finding.end]))
        else:
            parts.append(finding.entity.placeholder)
        last = finding.end
    parts.append(text[last:])
    return "".join(parts)
