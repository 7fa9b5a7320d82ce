"""A tenant's PII rules as the gateway hands them over: which entity types to redact, which to replace by
the tenant's keyed pseudonyms, which to refuse.

The compiler writes them on each tenant route as ``x-fairshare-pii-redact`` / ``x-fairshare-pii-block`` /
``x-fairshare-pii-pseudonymise``, comma-separated entity names (``email,phone``), empty for none. A name
this runtime does not know means the control plane is newer than the runtime (deployment skew), not a bad
request: it is logged once per name and otherwise ignored, so a rollout of a new entity type never takes
serving down. Block wins when a type is in two lists, then pseudonymise over redact (the PII policy never
lets a tenant pseudonymise a blocked type; this is the runtime's own guard).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

from inference_images.runtime.pii.entities import Entity

log = logging.getLogger(__name__)

_KNOWN = {entity.value: entity for entity in Entity}
_warned: set[str] = set()
_warned_lock = threading.Lock()
# Header values are compiled from a fixed vocabulary; anything longer is not a list of names.
_MAX_HEADER_LEN = 512


@dataclass(frozen=True, slots=True)
class PiiRules:
    redact: frozenset[Entity] = frozenset()
    block: frozenset[Entity] = frozenset()
    # Replaced by the tenant's keyed pseudonym (pii.pseudonyms), which needs the tenant's key (pii.keys).
    pseudonymise: frozenset[Entity] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "pseudonymise", self.pseudonymise - self.block)
        object.__setattr__(self, "redact", self.redact - self.block - self.pseudonymise)

    @property
    def active(self) -> bool:
        return bool(self.redact or self.block or self.pseudonymise)

    @property
    def watched(self) -> frozenset[Entity]:
        return self.redact | self.block | self.pseudonymise

    @classmethod
    def from_headers(cls, redact: str | None, block: str | None, pseudonymise: str | None = None) -> PiiRules:
        return cls(_parse(redact), _parse(block), _parse(pseudonymise))

    def describe(self) -> dict[str, list[str]]:
        return {"redact": sorted(self.redact), "block": sorted(self.block), "pseudonymise": sorted(self.pseudonymise)}


NO_RULES = PiiRules()


@functools.lru_cache(maxsize=256)
def _parse(value: str | None) -> frozenset[Entity]:
    # Cached: every request of a route carries the same few header values.
    if not value:
        return frozenset()
    found: set[Entity] = set()
    for raw in value[:_MAX_HEADER_LEN].split(","):
        name = raw.strip().lower()
        if not name:
            continue
        entity = _KNOWN.get(name)
        if entity is None:
            _warn_unknown(name)
        else:
            found.add(entity)
    return frozenset(found)


def _warn_unknown(name: str) -> None:
    with _warned_lock:
        if name in _warned or len(_warned) > 64:
            return
        _warned.add(name)
    log.warning(
        "unknown PII entity type in gateway header; ignored (control plane newer than this runtime?)",
        extra={"entity": name[:64], "known": sorted(_KNOWN)},
    )
