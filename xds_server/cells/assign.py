"""Which cell each tenant of a region belongs in: stable, bounded, with pins (docs/design/0005).

- Stable: a tenant's shared cell is a jump consistent hash of its id over the shared cells (Lamping and
  Veach, 2014), so adding a cell moves only the tenants the new cell takes (about 1/(N+1) of them), never
  one between two old cells, and an unrelated edit moves nobody.
- Bounded: no cell holds more than `platform.cells.size` tenants. A cell the hash over-fills keeps the
  tenants that rank first by a second hash; each of the rest, in that rank, goes to the first cell with room
  in an order of its own (rendezvous hashing over the shared cells). So overflow is always the same
  tenants, and onboarding or offboarding one tenant near capacity moves a few others, not hundreds: handing
  overflow to the cells with the most room, as this did before, let one arrival shift every later overflow
  tenant's cell (243-716 tenants moved per onboarding at 99.9% of 40 cells of 2,500; now 1-4).
- Pinned: a tenant's `cell` puts it in that cell (dedicated cells hold only pinned tenants); pins count
  against the cell's size.

A pure function of the config: every control-plane replica computes the same placement.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from xds_server.cells.layout import cells, is_split
from xds_server.config.model import Region
from xds_server.listing import capped

_JUMP_MULTIPLIER = 2862933555777941757
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class CellProblem:
    """`tenant` None: about the region as a whole (its capacity)."""

    tenant: str | None
    message: str


@functools.lru_cache(maxsize=1 << 18)
def _hashes(tenant: str) -> tuple[int, int]:
    digest = hashlib.blake2b(tenant.encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")


def jump(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket in [0, buckets) of a 64-bit key; growing `buckets` by one moves a
    key only into the new bucket."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


@functools.lru_cache(maxsize=1 << 14)
def _preference(tenant: str, shared: int) -> tuple[str, ...]:
    """The shared cells in the order an overflowing tenant tries them: by a hash of the tenant and the cell
    (rendezvous hashing), so a cell added or full changes only where it falls in each tenant's order."""
    def affinity(cell: str) -> bytes:
        return hashlib.blake2b(f"{tenant}\0{cell}".encode(), digest_size=8).digest()
    return tuple(sorted((f"c{i}" for i in range(shared)), key=affinity, reverse=True))


def assign_region(region: Region, tenants: Iterable[tuple[str, str | None]], size: int,
                  ) -> tuple[dict[str, str], list[CellProblem]]:
    """`tenants`: (id, pinned cell or None) of every tenant served in the region. Returns tenant -> cell and
    what stops a valid placement (an unknown pin, a cell over its size)."""
    names = cells(region)
    known = set(names)
    shared = region.cells.shared
    placed: dict[str, str] = {}
    load = dict.fromkeys(names, 0)
    problems: list[CellProblem] = []
    by_cell: dict[str, list[str]] = {f"c{i}": [] for i in range(shared)}
    for tenant, pin in tenants:
        if pin is not None:
            if pin not in known:
                choices = capped([f"c0..c{shared - 1}" if shared > 1 else "c0", *region.cells.dedicated])
                problems.append(CellProblem(tenant, f"cell {pin!r} is not a cell of region {region.id} "
                                                    f"(its cells: {choices})"))
                continue
            placed[tenant] = pin
            load[pin] += 1
        else:
            by_cell[f"c{jump(_hashes(tenant)[0], shared)}"].append(tenant)
    overflow: list[str] = []
    for cell, members in by_cell.items():
        room = max(0, size - load[cell])
        if len(members) > room:
            members.sort(key=lambda t: _hashes(t)[1])
            overflow.extend(members[room:])
            del members[room:]
        for tenant in members:
            placed[tenant] = cell
        load[cell] += len(members)
    overflow.sort(key=lambda t: _hashes(t)[1])
    open_cells = {cell for cell in by_cell if load[cell] < size}
    for tenant in overflow:
        if not open_cells:
            break
        cell = next(c for c in _preference(tenant, shared) if c in open_cells)
        placed[tenant] = cell
        load[cell] += 1
        if load[cell] >= size:
            open_cells.discard(cell)
    unplaced = sum(1 for t in overflow if t not in placed)
    if unplaced:
        total = sum(len(m) for m in by_cell.values()) + len(overflow) + sum(load[d] for d in region.cells.dedicated)
        need = -(-(total - sum(load[d] for d in region.cells.dedicated)) // size)
        problems.append(CellProblem(None, f"region {region.id}: {total:,} tenants for {shared} shared cells of at most "
                                          f"{size:,} (platform.cells.size): {unplaced:,} would have no cell; set "
                                          f"cells.shared to {need} or more"))
    for cell in region.cells.dedicated:
        if load[cell] > size:
            problems.append(CellProblem(None, f"region {region.id}: dedicated cell {cell} has {load[cell]:,} pinned "
                                              f"tenants, more than platform.cells.size {size:,}"))
    return placed, problems


def single_cell_pin(region: Region, pin: str) -> str | None:
    """A pin in a region without cells: only its one cell, c0, is valid."""
    if is_split(region) or pin == "c0":
        return None
    return (f"cell {pin!r} is not a cell of region {region.id}, which is not split into cells (cells.shared 1, no "
            "dedicated cells): its only cell is c0")


def place(size: int, regions: dict[str, Region], served: dict[str, tuple[str | None, list[str]]],
          ) -> tuple[dict[str, dict[str, str]], list[CellProblem]]:
    """Every region split into cells: region -> tenant -> cell. `served`: tenant -> (its pin, the regions
    it is served in). A pin is checked in every region the tenant is served in."""
    out: dict[str, dict[str, str]] = {}
    problems: list[CellProblem] = []
    for region_id, region in regions.items():
        here = [(t, pin) for t, (pin, where) in served.items() if region_id in where]
        if not is_split(region):
            problems.extend(CellProblem(t, why) for t, pin in here
                            if pin is not None and (why := single_cell_pin(region, pin)) is not None)
            continue
        out[region_id], found = assign_region(region, here, size)
        problems.extend(found)
    return out, problems


def place_changed(size: int, regions: dict[str, Region], before: dict[str, dict[str, str]],
                  changed: dict[str, tuple[str | None, list[str]] | None]) -> dict[str, dict[str, str]] | None:
    """What `place` would answer after `changed` (tenant -> its pin and regions, None: gone), from its answer
    `before`, in work that follows the changed tenants rather than the region's (onboarding one tenant
    among 100,000: 0.3 s to place them all again). None where only `place` can tell: a region any of whose
    shared cells was full before (its hash may have over-filled it, so some tenants may sit elsewhere and
    come back once there is room), or would be over full after, an unknown pin, a region it did not place.

    Sound because, with every shared cell below its size, no cell overflowed: each unpinned tenant is in its
    hash's cell and each pinned one in its pin, which is what `place` gives each changed tenant too, as long
    as no cell then holds more than its size."""
    out: dict[str, dict[str, str]] = {}
    for region_id, region in regions.items():
        if not is_split(region):
            if any(info is not None and region_id in info[1] and info[0] is not None
                   and single_cell_pin(region, info[0]) is not None for info in changed.values()):
                return None  # a pin this region refuses: `place` says so
            continue
        placed = before.get(region_id)
        if placed is None:
            return None
        load = Counter(placed.values())
        shared = region.cells.shared
        if any(load[f"c{i}"] >= size for i in range(shared)):
            return None
        known = set(cells(region))
        after = dict(placed)
        for tenant, info in changed.items():
            old = after.pop(tenant, None)
            if old is not None:
                load[old] -= 1
            if info is None or region_id not in info[1]:
                continue
            pin = info[0]
            if pin is not None and pin not in known:
                return None
            cell = pin if pin is not None else f"c{jump(_hashes(tenant)[0], shared)}"
            after[tenant] = cell
            load[cell] += 1
        if any(n > size for n in load.values()):
            return None
        out[region_id] = after
    return out
