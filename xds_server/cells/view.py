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
    members: dict[str, set[str]] = {}
    for tenant, cell in assigned.items():
        members.setdefault(cell, set()).add(tenant)
    return CellView(members={c: frozenset(m) for c, m in members.items()}, front=dict(assigned))


def settled_views(cfg: PlatformConfig) -> dict[str, CellView]:
    return {region: settled(assigned) for region, assigned in cfg.cells.items()}
