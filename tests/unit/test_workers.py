"""The cold path's worker processes (xds_server/workers.py): results in order from what the fork inherited,
and a worker that dies or hangs costs time, never the reload (None: the caller does the work itself)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from xds_server import workers


def _squares(context: dict[str, int], part: Sequence[int]) -> list[tuple[int, int, int]]:
    return [(x, x * x + context["offset"], os.getpid()) for x in part]


def _dies(_: None, part: Sequence[int]) -> list[int]:
    if 9 in part:  # the last share: a worker's
        os._exit(3)  # as if killed for memory
    return list(part)


def _hangs(_: None, part: Sequence[int]) -> list[int]:
    if 9 in part:
        time.sleep(60)
    return list(part)


def test_results_come_back_in_order_from_this_process_and_forked_workers_that_inherit_the_context() -> None:
    out = workers.fork_map(_squares, {"offset": 7}, list(range(10)), 3, "squares")
    assert out is not None and len(out) == 3
    flat = [row for part in out for row in part]
    assert [(x, sq) for x, sq, _ in flat] == [(x, x * x + 7) for x in range(10)]
    # The first share worked out here, every other in a worker
    assert {pid for _, _, pid in out[0]} == {os.getpid()}
    assert os.getpid() not in {pid for part in out[1:] for _, _, pid in part}


def _no_children_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return multiprocessing.active_children() == []


def test_a_worker_that_dies_gives_none_and_leaves_no_process_behind() -> None:
    assert workers.fork_map(_dies, None, list(range(10)), 2, "dies") is None
    assert _no_children_within(10)


def _unsendable(_: None, part: Sequence[int]) -> list[object]:
    return [lambda: None for _ in part]  # a worker's result that cannot cross the pipe


def test_a_result_that_cannot_be_sent_back_gives_none() -> None:
    assert workers.fork_map(_unsendable, None, list(range(10)), 2, "unsendable") is None
    assert _no_children_within(10)


def test_a_worker_that_hangs_is_given_up_on_and_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "TIMEOUT_BASE_S", 1.0)
    started = time.monotonic()
    assert workers.fork_map(_hangs, None, list(range(10)), 2, "hangs") is None
    assert time.monotonic() - started < 30
    assert _no_children_within(10)


@pytest.mark.parametrize(("items", "setting", "cpus", "expected"), [
    (500, None, 8, 1),  # too little work for a second process
    (10_000, None, 2, 2),  # the CPUs this process may use
    (10_000, None, 32, workers.MAX_WORKERS),
    (10_000, 1, 8, 1),  # controlplane.workers: 1 turns them off
    (3_000, 16, 8, 3),  # at least MIN_PER_WORKER items each
])
def test_how_many_workers_the_work_is_worth(monkeypatch: pytest.MonkeyPatch, items: int, setting: int | None,
                                            cpus: int, expected: int) -> None:
    monkeypatch.setattr(workers, "usable_cpus", lambda: cpus)
    assert workers.worker_count(items, setting) == expected


def test_chunks_are_contiguous_nearly_equal_and_in_order() -> None:
    parts = workers.chunks(list(range(11)), 4)
    assert [len(p) for p in parts] == [3, 3, 3, 2]
    assert [x for p in parts for x in p] == list(range(11))


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2, limits.cpu: 2
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs' time: 2 processes can use it
    ({"cpu.max": "max 100000\n"}, None),  # no limit
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
    ({}, None),  # no cgroup files at all
])
def test_the_cgroup_cpu_quota_caps_the_usable_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)))  # a node of 8
    assert workers.usable_cpus(tmp_path) == (expected if expected is not None else 8)
