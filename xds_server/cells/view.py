"""What a region's cells hold at one moment: the tenants in each cell's snapshot, and the cell the front
tier sends each tenant to. Settled, each tenant is in its assigned cell alone; while it moves it is in
both its old and its new cell, and the front sends it to whichever is serving it (cells/moves.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xds_server.config.model import PlatformConfig


@dataclass(frozen=True)
class CellView:
    members: Mapping[str, frozenset[str]]  # cell -> tenants in its snapshot
    front: Mapping[str, str]  # tenant -> the cell the front tier routes it to


def settled(assigned: Mapping[str, str]) -> CellView:
    return CellView(members=members_by_cell(assigned), front=dict(assigned))


def members_by_cell(assigned: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """tenant -> cell turned round: each cell's tenants."""
    members: dict[str, set[str]] = {}
    for tenant, cell in assigned.items():
        members.setdefault(cell, set()).add(tenant)
    return {c: frozenset(m) for c, m in members.items()}


def changed_tenants(before: Mapping[str, str], after: Mapping[str, str]) -> list[str] | None:
    """The tenants `after` places otherwise than `before` (or no longer, or anew); None where they are more
    than an eighth of `after` (a new cell, a rebalance), which is as cheap to redo whole as to follow."""
    out = [t for t in before if t not in after]
    out += [t for t, c in after.items() if before.get(t) != c]
    return out if len(out) <= len(after) // 8 else None


def settled_views(cfg: PlatformConfig) -> dict[str, CellView]:
    return {region: settled(assigned) for region, assigned in cfg.cells.items()}
