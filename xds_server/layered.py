"""A read-only mapping made of another one and the changes since: what an edit among 100,000 tenants builds
instead of a copy of everything (a dict of 100,000 entries costs an edit milliseconds to copy, and as many
again for the collector to traverse once), used wherever an edit updates a per-tenant table whose order does
not matter (the rate-limit table, the compiler's memo keys)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

V = TypeVar("V")


class Layered(Mapping[str, V]):
    """A base shared with the mappings before, and the changes since (None: removed). Lookups read the
    changes first; once they grow past a sixteenth of the base (and 1,024) they are merged into a new base,
    so an edit costs its changes and, amortised, a few copies of each entry. Iteration order is not the
    base's for changed keys (they come last)."""

    __slots__ = ("_base", "_changes", "_len")

    def __init__(self, base: Mapping[str, V], changes: dict[str, V | None], size: int) -> None:
        self._base, self._changes, self._len = base, changes, size

    @classmethod
    def over(cls, table: Mapping[str, V], changes: Mapping[str, V | None]) -> Layered[V]:
        base, pending = (table._base, dict(table._changes)) if isinstance(table, Layered) else (table, {})
        size = len(table)
        for key, value in changes.items():
            size += (value is not None) - (key in table)
            pending[key] = value
        if len(pending) > max(1024, len(base) // 16):
            merged = dict(base)
            for key, value in pending.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return cls(MappingProxyType(merged), {}, len(merged))
        return cls(base, pending, size)

    def get(self, key: str, default: Any = None) -> Any:
        hit = self._changes.get(key, _UNCHANGED)
        if hit is _UNCHANGED:
            return self._base.get(key, default)
        return hit if hit is not None else default

    def __getitem__(self, key: str) -> V:
        hit = self.get(key, _UNCHANGED)
        if hit is _UNCHANGED:
            raise KeyError(key)
        return hit  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _UNCHANGED) is not _UNCHANGED

    def __iter__(self) -> Iterator[str]:
        changes = self._changes
        yield from (key for key in self._base if key not in changes)
        yield from (key for key, value in changes.items() if value is not None)

    def __len__(self) -> int:
        return self._len


_UNCHANGED: Any = object()
