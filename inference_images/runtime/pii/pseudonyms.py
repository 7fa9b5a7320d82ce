"""Keyed pseudonyms: an entity replaced by ``<EMAIL_3f9a1c2b5e7d4a10>``, the same for the same value of
one tenant, unrelated across tenants, and irreversible without that tenant's key (GDPR Art. 4(5)).

    pseudonym = "<" + TYPE + "_" + hex(HMAC-SHA256(key, type + "\\0" + normalised value))[:16] + ">"

The entity type is part of the message, so an IBAN and a phone number that normalise to the same digits
never share a pseudonym. Values are normalised first, so the ways one address or number is written
(``Bob@Example.COM``, ``+44 20 7946 0958`` with other spacing) join on one pseudonym.

16 hex digits (64 bits): a tenant with ten million distinct values of one type has about a 3e-6 chance of
any two sharing a pseudonym (birthday bound n^2 / 2^65); 10 digits would make that a near certainty.

The key lives only in a ``Pseudonymiser``: its repr and str never show it, and nothing here logs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

from inference_images.runtime.pii.entities import Entity, fold

DIGEST_HEX = 16
# Shorter keys are a configuration mistake (a placeholder, a truncated file), not a key: refused.
MIN_KEY_BYTES = 32

_NOT_DIGITS = re.compile(r"[^0-9]")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def normalise(entity: Entity, value: str) -> str:
    """The form two spellings of one value share (fullwidth digits, no-break spaces or a zero-width space
    inside make no other value: the detectors' fold comes first)."""
    if entity is Entity.EMAIL:
        # Accents kept: ``bób@`` and ``bob@`` are two mailboxes. Domains are case-insensitive; local parts
        # are in practice too (every large provider folds them).
        return fold(value, accents=True).strip().lower()
    text = fold(value).strip()
    if entity is Entity.PHONE:
        # Digits only, keeping an international "+": "(415) 555-0132" and "415.555.0132" are one number.
        return ("+" if text.startswith("+") else "") + _NOT_DIGITS.sub("", text)
    if entity is Entity.CREDIT_CARD:
        return _NOT_DIGITS.sub("", text)
    if entity in (Entity.IBAN, Entity.NATIONAL_ID):
        return _NOT_ALNUM.sub("", text).upper()
    if entity is Entity.IP_ADDRESS:
        return _canonical_ip(text)
    return text


def _canonical_ip(text: str) -> str:
    # "2001:DB8::1" and "2001:db8:0:0::1" are one address; a prefix or zone id stays part of the value.
    for parse in (ipaddress.ip_address, ipaddress.ip_interface):
        try:
            return str(parse(text))
        except ValueError:
            continue
    return text.lower()


class Pseudonymiser:
    """One tenant's pseudonyms. Built from the key bytes; holds them and shows them to no one."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a pseudonymisation key must hold at least {MIN_KEY_BYTES} bytes")
        self._key = key
        # Which key this is, for tests and rotation checks: a digest of a digest, useless for a pseudonym.
        self.key_id = hashlib.sha256(b"fairshare-key-id\0" + hashlib.sha256(key).digest()).hexdigest()[:12]

    def pseudonym(self, entity: Entity, value: str) -> str:
        message = f"{entity.value}\0{normalise(entity, value)}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:DIGEST_HEX]
        return f"<{entity.value.upper()}_{digest}>"

    def __repr__(self) -> str:
        return f"Pseudonymiser(key_id={self.key_id})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        # Never pickled (a process pool, a cache on disk): the key stays in this process's memory.
        raise TypeError("a Pseudonymiser cannot be pickled")
