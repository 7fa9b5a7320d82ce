"""How much memory a model really takes once loaded: the process's resident-set growth over its load.

The cache budgets models by this number, not by their file size: an ONNX graph's session may hold more
than its file (pre-packed weights, constant folding) or less (an external-data file never read). The
measurement is made robust three ways:

- onnxruntime's CPU arena is off (``onnx_format``), so a session's memory is plain allocations that are
  resident while it lives and given back when it goes, not a pool that grows and stays;
- ``malloc_trim(0)`` runs before and after, so pages freed by an earlier unload are returned to the
  kernel first and cannot be reused silently (which would make a reload look free);
- one measurement runs at a time (a process-wide lock), so two loader threads never see each other's
  growth; only the session build is serialised, downloads and hashing still run in parallel.

Measured on a CPU: a MatMul graph of 15 KB, 1.5 MB and 20 MB grows RSS by its weights plus 20-90 KB,
repeatably across load/unload cycles; the first session of a process also pays onnxruntime's one-time
set-up (about 9 MB), which ``onnx_format.warm_up`` spends at start so no tenant is charged for it.
Where ``/proc`` is unavailable the measurement is 0 and callers fall back to the artefact's size. On a GPU
the device's own allocation is added (free device memory before minus after, through torch when present).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _load_libc() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _load_libc()


def trim() -> None:
    """Give freed heap pages back to the kernel, so RSS counts live memory only."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def resident_bytes() -> int:
    """This process's resident set size in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _device_free(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    try:
        import torch

        index = int(device.partition(":")[2] or 0)
        free, _total = torch.cuda.mem_get_info(index)
        return int(free)
    except Exception:  # no torch, no CUDA build: the host side is all we can see
        return None


def measured(build: Callable[[], T], device: str = "cpu") -> tuple[T, int]:
    """Run ``build`` (a model load) and return its result with the bytes it left resident (>= 0)."""
    with _lock:
        trim()
        before = resident_bytes()
        device_before = _device_free(device)
        result = build()
        trim()
        grown = resident_bytes() - before
        device_after = _device_free(device)
    if device_before is not None and device_after is not None:
        grown += device_before - device_after
    return result, max(grown, 0)
