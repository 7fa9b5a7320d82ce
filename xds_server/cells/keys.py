"""Which snapshot an Envoy gets: its region's, or in a region split into cells its cell's or the front's."""

from __future__ import annotations

FRONT = "front"
_SEP = "/"


def snapshot_key(region: str, cell: str | None) -> str:
    """The SnapshotStore key: the region alone in a single-cell region (today's layout), else
    `<region>/<cell>` (`<region>/front` for the front tier)."""
    return region if cell is None else f"{region}{_SEP}{cell}"


def split_key(key: str) -> tuple[str, str | None]:
    region, sep, cell = key.partition(_SEP)
    return region, (cell if sep else None)
