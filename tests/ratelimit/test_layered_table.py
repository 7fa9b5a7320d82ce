"""The limit table an edit produces shares the table before it (ratelimit/limits.py `Layered`): whatever the
edits, it reads exactly as a table built whole from the same tenants, before and after its changes are merged."""

from __future__ import annotations

import random

from xds_server.config.model import FailureMode
from xds_server.ratelimit.limits import Layered, Limit, LimitTable, TenantLimits


def limits(tid: str, rate: float) -> TenantLimits:
    return TenantLimits(tid, "pro", FailureMode.OPEN, False, Limit(rate, 1.0, 2 * rate), Limit(1000.0, 60.0, 100.0))


def test_updates_read_as_a_table_built_whole() -> None:
    rng = random.Random(3)
    expected = {f"t{i:04d}": limits(f"t{i:04d}", 1.0 + i % 7) for i in range(2000)}
    table = LimitTable.build(expected)
    merged = False
    for step in range(400):
        changes: dict[str, TenantLimits | None] = {}
        for _ in range(rng.choice([1, 1, 3, 40])):
            tid = f"t{rng.randrange(2400):04d}"
            changes[tid] = None if rng.random() < 0.3 else limits(tid, float(rng.randrange(1, 50)))
        table = table.updated(changes)
        for tid, new in changes.items():
            if new is None:
                expected.pop(tid, None)
            else:
                expected[tid] = new
        whole = LimitTable.build(expected)
        assert table.version == whole.version, step
        assert len(table.tenants) == len(expected), step
        assert dict(table.tenants) == expected, step
        for tid in [*changes, "t0001", "nobody"]:
            assert table.get(tid) == expected.get(tid), (step, tid)
            assert (tid in table.tenants) == (tid in expected), (step, tid)
        layered = table.tenants
        assert isinstance(layered, Layered)
        merged = merged or not layered._changes  # the changes were merged into a new base at least once
    assert merged
