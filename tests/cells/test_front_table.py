"""The front tier's table kept between compiles (compiler/front.py `FrontTable`): patched as tenants come, go
and move between cells, it is byte for byte the table built afresh for the same placement (so every replica,
whatever its history, publishes the same version)."""

from __future__ import annotations

import random

from xds_server.compiler.front import FrontTable


def test_a_patched_table_is_the_table_built_afresh() -> None:
    rng = random.Random(7)
    cells = [f"c{i}" for i in range(6)]
    placement = {f"t{i:04d}": rng.choice(cells) for i in range(800)}
    kept = FrontTable.build(placement, 30.0)
    patched = rebuilt = 0
    for step in range(150):
        placement = dict(placement)
        for _ in range(rng.choice([1, 1, 3, 20, 300])):  # 300: past an eighth of the table, built anew
            tid = f"t{rng.randrange(1200):04d}"
            if rng.random() < 0.4:
                placement.pop(tid, None)
            else:
                placement[tid] = rng.choice(cells)
        message_before = kept.message
        got = kept.routes(placement)
        patched += kept.message is message_before
        rebuilt += kept.message is not message_before
        fresh = FrontTable.build(placement, 30.0).resource
        assert (got.version, got.packed.value) == (fresh.version, fresh.packed.value), step
        assert kept.routes(placement) is got  # the same placement again: nothing to redo
    assert patched > 50 and rebuilt > 5
