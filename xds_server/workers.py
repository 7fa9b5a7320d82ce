"""Forked worker processes for the control plane's cold path: a first load's tenant files parsed, and its
tenants compiled, a share each on every core the process may use.

A first load is the one reload whose cost follows the number of tenants (an edit's follows the changed
ones), and it decides how long a restarted control plane keeps its gateways waiting: at 100,000 tenants,
most of a minute on one core. The work is per tenant and independent, so it splits cleanly; fork, not
spawn, because the workers need the loaded config and a fork hands them it without copying (pickling
10,000 tenants' models costs more than compiling them).

Forking a process that runs gRPC's and asyncio's threads is safe for what the workers do (pure Python and
protobuf, nothing of gRPC): the child has only the forking thread, and never returns to the parent's code.
Should a worker still die or hang (killed for memory, a lock some thread held at the fork), or fail any
other way (an exception, a result that cannot be sent back), the caller does the work itself: `fork_map`
returns None, after a timeout for a hang, and nothing is lost but time (a bug then recurs in the caller,
with its traceback). While it runs a worker adds the memory it writes to, about a quarter of the control
plane's (78 MB beside 325 MB at 10,000 tenants, measured), which the pod's memory limit counts.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("fairshare.workers")

T = TypeVar("T")
R = TypeVar("R")

# Below this many items per worker, forking and sending results back cost more than they save.
MIN_PER_WORKER = 1_000
MAX_WORKERS = 8
# A hung worker is given up on after this, plus a little per item (100,000 tenants: about 4 minutes).
TIMEOUT_BASE_S = 30.0
TIMEOUT_PER_ITEM_S = 0.002

_lock = threading.Lock()
# What the workers inherit through the fork: set just before it, cleared after.
_inherited: Any = None


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may run on, and no more than its cgroup's CPU quota allows: in a pod with
    `limits.cpu: 2` on a node of 32, the affinity says 32 and the quota 2 (forking 32 workers there would
    only share 2 CPUs' time, and multiply the memory the pod's limit counts)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else cpus


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time per period the cgroup allows (v2 `cpu.max`, or v1's quota and period); None: no limit."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]  # "max 100000" or "200000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        v1_quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        v1_period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if v1_quota <= 0 or v1_period <= 0 else v1_quota / v1_period


def worker_count(items: int, setting: int | None) -> int:
    """How many processes, this one included, `items` are worth: `setting` (platform.yaml
    controlplane.workers) or the usable CPUs, at most MAX_WORKERS, and at least MIN_PER_WORKER items each;
    1 means this process alone."""
    wanted = setting if setting is not None else min(usable_cpus(), MAX_WORKERS)
    return max(1, min(wanted, items // MIN_PER_WORKER))


def chunks(items: Sequence[T], n: int) -> list[Sequence[T]]:
    """`items` in `n` contiguous runs of nearly equal length, in order."""
    size, extra = divmod(len(items), n)
    out: list[Sequence[T]] = []
    start = 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def fork_map(fn: Callable[[Any, Sequence[T]], R], context: Any, items: Sequence[T], workers: int,
             what: str) -> list[R] | None:
    """fn(context, chunk) for `workers` contiguous chunks of `items`: the first in this process, each other in
    a forked process that inherits `context` as it is now; the results in order, or None if any worker
    failed (the caller then does the work in this process). `what` names the work in the log."""
    if workers < 2 or len(items) < 2:
        return None
    parts = chunks(items, workers)
    timeout = TIMEOUT_BASE_S + TIMEOUT_PER_ITEM_S * len(items)
    global _inherited
    with _lock:  # one fork at a time: the inherited context is a single slot
        _inherited = context
        before = set(multiprocessing.active_children())
        pool = ProcessPoolExecutor(len(parts) - 1, mp_context=multiprocessing.get_context("fork"))
        started = time.perf_counter()
        done = False
        try:
            futures = [pool.submit(_in_worker, fn, part) for part in parts[1:]]
            # This process works too, rather than wait: one share needs no fork and no trip back.
            results = [fn(context, parts[0])]
            deadline = started + timeout
            results += [f.result(timeout=max(0.0, deadline - time.perf_counter())) for f in futures]
            done = True
        except Exception as err:  # dead, hung, its result unsendable; a bug in fn recurs in the caller
            log.warning("%s: a worker process failed (%s); doing it in this process instead", what,
                        type(err).__name__)
            return None
        finally:
            _inherited = None
            pool.shutdown(wait=done, cancel_futures=True)
            if not done:  # a hung or failed worker must not outlive the attempt
                for child in set(multiprocessing.active_children()) - before:
                    child.kill()
                    child.join(5)
    log.debug("%s: %d items in %d processes, %.2fs", what, len(items), len(parts), time.perf_counter() - started)
    return results


def _in_worker(fn: Callable[[Any, Sequence[T]], R], part: Sequence[T]) -> R:
    return fn(_inherited, part)
