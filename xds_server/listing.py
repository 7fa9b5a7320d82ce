"""Lists of tenants, models or resources in messages a person reads: the first few, then "and N more".

At 100,000 tenants one unbounded list is a 100 KB line nobody reads; every message, report and status
line that names many things goes through `capped`, and the full list stays in the JSON form beside it.
Callers order the items so the ones that matter most come first (the largest, the worst).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Enough to recognise the pattern and act on the worst offenders; the rest is a count.
DEFAULT_LIMIT = 5


def capped(items: Iterable[object], limit: int = DEFAULT_LIMIT, sep: str = ", ") -> str:
    """`a, b, c and 6,000 more`: at most `limit` items in the given order, then how many were left out."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    shown: list[str] = []
    more = 0
    for item in items:
        if len(shown) < limit:
            shown.append(str(item))
        else:
            more += 1
    if not more:
        return sep.join(shown)
    return f"{sep.join(shown)} and {more:,} more"


def capped_lines(items: Sequence[object], limit: int | None, prefix: str, rest: str) -> list[str]:
    """`prefix` + each of the first `limit` items (None: all) as its own line, then `  ... and N more <rest>`."""
    shown = items if limit is None else items[:limit]
    out = [f"{prefix}{item}" for item in shown]
    if len(items) > len(shown):
        out.append(f"  ... and {len(items) - len(shown):,} more {rest}")
    return out


def clipped(text: str, limit: int) -> str:
    """One line of at most `limit` characters, the cut marked: for a message that is already one string
    (an Envoy rejection, a refused reload) and may name thousands of resources."""
    if limit < 2:
        raise ValueError(f"limit must be at least 2, got {limit}")
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
