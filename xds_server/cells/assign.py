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

A pure function of the config: every control-plane replica computes the same placement. `place_changed`
gives the same answer from the last placement and the changed tenants, in work that follows them and the
region's overflow, not its tenants: each cell's hashed tenants are kept in rank order beside the answer.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
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


def _rank(tenant: str) -> tuple[int, str]:
    """Who a cell the hash over-fills keeps first (the id breaks a tie, so any input order ranks alike)."""
    return _hashes(tenant)[1], tenant


def _home(tenant: str, shared: int) -> str:
    return f"c{jump(_hashes(tenant)[0], shared)}"


@dataclass(frozen=True)
class Ledger:
    """What a region's placement was made from, beside it, so that a change can be placed without hashing
    every tenant again."""

    hashed: Mapping[str, list[str]]  # shared cell -> the unpinned tenants its hash picks, by _rank
    pins: Mapping[str, str]  # pinned tenant -> its cell
    overflow: Mapping[str, str]  # tenant its hash's cell did not keep -> the cell it got


@dataclass(frozen=True)
class Placement:
    cells: dict[str, dict[str, str]]  # region split into cells -> tenant -> cell
    ledgers: dict[str, Ledger]  # the same regions'


def _spill(region: Region, hashed: Mapping[str, list[str]], pins: Mapping[str, str], size: int,
           ) -> tuple[dict[str, str], list[str], Counter[str]]:
    """Which tenants their hash's cell cannot keep and the cell each gets: (tenant -> cell, the tenants no cell
    has room for, each cell's load). Work that follows the overflow, not the region's tenants."""
    load: Counter[str] = Counter(pins.values())
    overflow: list[str] = []
    for cell, members in hashed.items():
        room = max(0, size - load[cell])
        overflow.extend(members[room:])
        load[cell] += min(room, len(members))
    overflow.sort(key=_rank)
    open_cells = {cell for cell in hashed if load[cell] < size}
    got: dict[str, str] = {}
    for k, tenant in enumerate(overflow):
        if not open_cells:
            return got, overflow[k:], load
        cell = next(c for c in _preference(tenant, region.cells.shared) if c in open_cells)
        got[tenant] = cell
        load[cell] += 1
        if load[cell] >= size:
            open_cells.discard(cell)
    return got, [], load


def _problems(region: Region, size: int, tenants: int, unplaced: list[str], load: Counter[str]) -> list[CellProblem]:
    """What stops a valid placement of a region's `tenants` besides unknown pins."""
    problems: list[CellProblem] = []
    if unplaced:
        pinned_away = sum(load[d] for d in region.cells.dedicated)
        need = -(-(tenants - pinned_away) // size)
        problems.append(CellProblem(None, f"region {region.id}: {tenants:,} tenants for {region.cells.shared} shared "
                                          f"cells of at most {size:,} (platform.cells.size): {len(unplaced):,} would "
                                          f"have no cell; set cells.shared to {need} or more"))
    for cell in region.cells.dedicated:
        if load[cell] > size:
            problems.append(CellProblem(None, f"region {region.id}: dedicated cell {cell} has {load[cell]:,} pinned "
                                              f"tenants, more than platform.cells.size {size:,}"))
    return problems


def _unknown_pin(region: Region, tenant: str, pin: str) -> CellProblem:
    shared = region.cells.shared
    choices = capped([f"c0..c{shared - 1}" if shared > 1 else "c0", *region.cells.dedicated])
    return CellProblem(tenant, f"cell {pin!r} is not a cell of region {region.id} (its cells: {choices})")


def _assign(region: Region, tenants: Iterable[tuple[str, str | None]], size: int,
            ) -> tuple[dict[str, str], Ledger, list[CellProblem]]:
    known = set(cells(region))
    shared = region.cells.shared
    pins: dict[str, str] = {}
    hashed: dict[str, list[str]] = {f"c{i}": [] for i in range(shared)}
    problems: list[CellProblem] = []
    count = 0
    for tenant, pin in tenants:
        if pin is None:
            hashed[_home(tenant, shared)].append(tenant)
        elif pin in known:
            pins[tenant] = pin
        else:
            problems.append(_unknown_pin(region, tenant, pin))
            continue
        count += 1
    for members in hashed.values():
        members.sort(key=_rank)
    got, unplaced, load = _spill(region, hashed, pins, size)
    placed = dict(pins)
    for cell, members in hashed.items():
        placed.update((t, got.get(t, cell)) for t in members)
    for tenant in unplaced:
        del placed[tenant]
    return placed, Ledger(hashed, pins, got), [*problems, *_problems(region, size, count, unplaced, load)]


def assign_region(region: Region, tenants: Iterable[tuple[str, str | None]], size: int,
                  ) -> tuple[dict[str, str], list[CellProblem]]:
    """`tenants`: (id, pinned cell or None) of every tenant served in the region. Returns tenant -> cell and
    what stops a valid placement (an unknown pin, a cell over its size)."""
    placed, _ledger, problems = _assign(region, tenants, size)
    return placed, problems


def single_cell_pin(region: Region, pin: str) -> str | None:
    """A pin in a region without cells: only its one cell, c0, is valid."""
    if is_split(region) or pin == "c0":
        return None
    # A pin holds in every region the tenant is served in: one region's dedicated cell is not enough.
    return (f"cell {pin!r} is not a cell of region {region.id}, which is not split into cells (cells.shared 1, no "
            f"dedicated cells): its only cell is c0; a pin holds in every region the tenant is served in, so add "
            f"{pin!r} to {region.id}'s cells.dedicated in regions.yaml, or drop the pin")


def place(size: int, regions: dict[str, Region], served: dict[str, tuple[str | None, list[str]]],
          ) -> tuple[Placement, list[CellProblem]]:
    """Every region split into cells: region -> tenant -> cell. `served`: tenant -> (its pin, the regions
    it is served in). A pin is checked in every region the tenant is served in."""
    out = Placement({}, {})
    problems: list[CellProblem] = []
    for region_id, region in regions.items():
        here = [(t, pin) for t, (pin, where) in served.items() if region_id in where]
        if not is_split(region):
            problems.extend(CellProblem(t, why) for t, pin in here
                            if pin is not None and (why := single_cell_pin(region, pin)) is not None)
            continue
        out.cells[region_id], out.ledgers[region_id], found = _assign(region, here, size)
        problems.extend(found)
    return out, problems


def place_changed(size: int, regions: dict[str, Region], before: Placement,
                  changed: dict[str, tuple[str | None, list[str]] | None]) -> Placement | None:
    """What `place` would answer after `changed` (tenant -> its pin and regions, None: gone), from its answer
    `before`: each changed tenant taken out of its cell's ranked list or pins and put back where it now
    belongs, then the region's overflow placed again (onboarding one tenant among 100,000: 0.4 s to place
    them all again). None where `place` would find a problem (it names them) or `before` lacks a region.

    Sound because a placement is a function of each shared cell's hashed tenants in rank order and the
    pins: what the ledger holds, updated for the changed tenants, and `_spill` then does what `place` does."""
    out = Placement({}, {})
    for region_id, region in regions.items():
        if not is_split(region):
            if any(info is not None and region_id in info[1] and info[0] is not None
                   and single_cell_pin(region, info[0]) is not None for info in changed.values()):
                return None  # a pin this region refuses: `place` says so
            continue
        placed, ledger = before.cells.get(region_id), before.ledgers.get(region_id)
        if placed is None or ledger is None:
            return None
        after = _replace(region, size, placed, ledger, changed)
        if after is None:
            return None
        out.cells[region_id], out.ledgers[region_id] = after
    return out


def _replace(region: Region, size: int, placed: dict[str, str], ledger: Ledger,
             changed: dict[str, tuple[str | None, list[str]] | None]) -> tuple[dict[str, str], Ledger] | None:
    """One region's `place_changed`; the ledger's lists are copied before a change, never changed in place
    (a reload that fails later keeps the last placement)."""
    shared, known = region.cells.shared, set(cells(region))
    hashed = dict(ledger.hashed)
    copied: set[str] = set()
    pins = dict(ledger.pins)  # a few: copied whole

    def writable(cell: str) -> list[str]:
        if cell not in copied:
            hashed[cell] = list(hashed[cell])
            copied.add(cell)
        return hashed[cell]

    for tenant, info in changed.items():
        if tenant in pins:
            del pins[tenant]
        elif tenant in placed:
            members = writable(_home(tenant, shared))
            at = bisect.bisect_left(members, _rank(tenant), key=_rank)
            if at == len(members) or members[at] != tenant:
                return None  # not where the ledger says: `place` starts again from the tenants
            del members[at]
        if info is None or region.id not in info[1]:
            continue
        pin = info[0]
        if pin is None:
            bisect.insort(writable(_home(tenant, shared)), tenant, key=_rank)
        elif pin in known:
            pins[tenant] = pin
        else:
            return None  # `place` names the unknown pin
    got, unplaced, load = _spill(region, hashed, pins, size)
    if _problems(region, size, 0, unplaced, load):  # (whether there is one: `place` words it)
        return None
    after = dict(placed)
    for tenant in ledger.overflow.keys() - got.keys():
        after[tenant] = _home(tenant, shared)  # kept by its hash's cell again (a changed one is set below)
    after.update(got)
    for tenant, info in changed.items():
        after.pop(tenant, None)
        if info is not None and region.id in info[1]:
            after[tenant] = pins.get(tenant) or got.get(tenant) or _home(tenant, shared)
    return after, Ledger(hashed, pins, got)
