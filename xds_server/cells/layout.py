"""A region's cells, in their fixed order, and where each listens when run on one machine."""

from __future__ import annotations

from xds_server.config.model import Region


def cells(region: Region) -> list[str]:
    """Shared cells c0..c{N-1}, then dedicated ones in declared order: a cell's index never changes when a
    dedicated cell is added at the end."""
    return [*(f"c{i}" for i in range(region.cells.shared)), *region.cells.dedicated]


def is_split(region: Region) -> bool:
    """Whether the region runs a front tier and cells; one shared cell alone is today's single gateway."""
    return region.cells.shared > 1 or bool(region.cells.dedicated)


def local_port(region: Region, index: int) -> int:
    """Where cell `index` listens when every cell runs on one machine (`fairshare run`, `serve
    --local-cell-ports`): right after the front tier's port. In a cluster each cell's pods listen on the
    region's gateway port."""
    port = region.gateway_port + 1 + index
    if port > 65535:
        raise ValueError(f"region {region.id}: cell {index} would listen on port {port}; lower gateway_port")
    return port
