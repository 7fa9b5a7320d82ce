"""The moves' books brought up to date from what the placement changed (cells/moves.py `Moves.views`): through
onboarding, offboarding, pins, rebalances and moves stepping on, every view and every book is what a walk of
the whole placement gives, as before the views followed the changes alone."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from xds_server.cells.moves import Moves, _Leaving

REGION = "us-east-1"
CELLS = ["c0", "c1", "c2", "d0"]


def _config(assigned: dict[str, str]) -> Any:
    return SimpleNamespace(cells={REGION: assigned})  # views reads only the placement


def _step_on(moves: Moves, rng: random.Random) -> None:
    """What advance does once Envoys have acknowledged: some moving tenants switch, some old cells let go."""
    arriving, leaving, front = moves._arriving[REGION], moves._leaving[REGION], moves._front[REGION]
    for tenant in sorted(arriving)[: rng.randrange(3)]:
        old = front.get(tenant)
        front[tenant] = arriving.pop(tenant).cell
        if old is not None:
            leaving[tenant] = _Leaving(old)
    for tenant in sorted(leaving)[: rng.randrange(3)]:
        del leaving[tenant]
    moves._last.pop(REGION, None)


def _books(moves: Moves) -> tuple[object, ...]:
    return (dict(moves._front[REGION]), {t: m.cell for t, m in moves._arriving[REGION].items()},
            {t: g.cell for t, g in moves._leaving[REGION].items()})


def test_views_from_the_changes_are_views_from_everyone() -> None:
    rng = random.Random(3)
    assigned = {f"t{i:04d}": rng.choice(CELLS) for i in range(400)}
    changes, whole = Moves(), Moves()
    moving = 0
    for step in range(300):
        first = step == 0
        if not first:
            assigned = dict(assigned)
            for _ in range(rng.choice([0, 1, 1, 2, 8, 120])):  # 120: most of them, walked whole
                tid = f"t{rng.randrange(500):04d}"
                if rng.random() < 0.3:
                    assigned.pop(tid, None)
                else:
                    assigned[tid] = rng.choice(CELLS)
        whole._placed.clear()  # no placement to compare with: every tenant looked at
        got, expected = changes.views(_config(assigned), first), whole.views(_config(assigned), first)
        assert got[REGION].members == expected[REGION].members, step
        assert got[REGION].front == expected[REGION].front, step
        assert _books(changes) == _books(whole), step
        moving += bool(_books(changes)[1])
        if rng.random() < 0.5:
            _step_on(changes, random.Random(step))
            _step_on(whole, random.Random(step))
    assert moving > 100  # tenants were on their way between cells through most of the walk
