"""Read-only mappings made of another one and the changes since: what an edit among 100,000 tenants builds
instead of a copy of everything (a dict of 100,000 entries costs an edit milliseconds to copy, and as many
again for the collector to traverse once). `Layered` wherever an edit updates a per-tenant table whose order
does not matter (the rate-limit table, the compiler's memo keys); `Revised` where it does and the edit
replaces values only (the config's tenants, in order, after an edit that adds or removes none)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
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
        if _merge_due(pending, base):
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


def _merge_due(changes: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    """Changes past a sixteenth of the base (and 1,024) are merged into a new base."""
    return len(changes) > max(1024, len(base) // 16)


class Revised(Mapping[str, V]):
    """A base mapping with some of its values replaced: its keys, and their order, are the base's. What an
    edit of a few tenants builds for the config's tenant table, where order matters (tenants are sorted)
    and a copy of 100,000 entries cost an edit a few milliseconds (each entry's key and value touched, in a
    heap of gigabytes). Replacements past a sixteenth of the base (and 1,024) are merged into a plain dict,
    so a table is never more than one layer deep and, amortised, an edit costs its changes."""

    __slots__ = ("_base", "_replaced")

    def __init__(self, base: Mapping[str, V], replaced: dict[str, V]) -> None:
        self._base, self._replaced = base, replaced

    @classmethod
    def over(cls, table: Mapping[str, V], replaced: Mapping[str, V]) -> Mapping[str, V]:
        """`table` with the values of `replaced`'s keys, every one of which must be in `table`."""
        base, pending = (table._base, dict(table._replaced)) if isinstance(table, Revised) else (table, {})
        for key, value in replaced.items():
            if key not in base:
                raise KeyError(f"{key!r} is not in the table: only a value can be replaced")
            pending[key] = value
        if _merge_due(pending, base):
            return as_dict(cls(base, pending))
        return cls(base, pending)

    def __getitem__(self, key: str) -> V:
        hit = self._replaced.get(key, _UNCHANGED)
        return self._base[key] if hit is _UNCHANGED else hit  # type: ignore[no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        hit = self._replaced.get(key, _UNCHANGED)
        return self._base.get(key, default) if hit is _UNCHANGED else hit

    def __contains__(self, key: object) -> bool:
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)

    def items(self) -> ItemsView[str, V]:
        return _RevisedItems(self)

    def values(self) -> ValuesView[V]:
        return _RevisedValues(self)


class _RevisedItems(ItemsView[str, V]):
    _mapping: Revised[V]

    def __iter__(self) -> Iterator[tuple[str, V]]:
        replaced = self._mapping._replaced
        for key, value in self._mapping._base.items():
            yield key, replaced.get(key, value)


class _RevisedValues(ValuesView[V]):
    _mapping: Revised[V]

    def __iter__(self) -> Iterator[V]:
        replaced = self._mapping._replaced
        for key, value in self._mapping._base.items():
            yield replaced.get(key, value)


def as_dict(table: Mapping[str, V]) -> dict[str, V]:
    """A new plain dict of `table`, in its order: a Revised one's base copied in C, then its replacements."""
    if isinstance(table, Revised):
        merged = dict(table._base)
        merged.update(table._replaced)
        return merged
    return dict(table)
