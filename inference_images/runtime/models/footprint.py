"""How much memory a model really takes once loaded: the bytes its load left allocated.

The cache budgets models by this number, not by their file size: an ONNX graph's session may hold more
than its file (pre-packed weights, constant folding) or less (external data never read). The measure is
the growth of the C heap's bytes in use (glibc's ``mallinfo2``: ``uordblks + hblkhd``) over the session
build, which is robust where the resident set is not:

- onnxruntime's CPU arena is off (``onnx_format``), so a session's memory is plain allocations, in use
  while it lives and freed when it goes, not a pool that grows and stays;
- bytes in use do not depend on whether the allocator reused pages freed by an earlier unload (the
  resident set does: a reload into freed pages looks free, and returning them to the kernel first,
  ``malloc_trim``, made every load fault fresh pages in, measured 2-3x slower for a 20 MB graph);
- one measurement runs at a time (a process-wide lock), so two loader threads never see each other's
  growth; only the session build is serialised, downloads and hashing still run in parallel.

Measured on a CPU: MatMul graphs of 15 KB, 1.5 MB and 20 MB measure their weights plus 60-90 KB, within
10 KB across repeated loads whether or not earlier sessions were freed. The first session of a process
also pays onnxruntime's one-time set-up (several MB), which ``onnx_format.warm_up`` spends at start so no
tenant is charged for it. Without glibc (musl, macOS) the resident set's growth is used, around
``malloc_trim``-free reads; callers floor either at the artefact's size. On a GPU the device's own
allocation is added (free device memory before minus after, through torch when present).
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]


def _load_mallinfo2() -> Callable[[], _MallInfo2] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallinfo2 = ctypes.CDLL(name).mallinfo2  # glibc 2.33+
    except (OSError, AttributeError):
        return None
    mallinfo2.argtypes = []
    mallinfo2.restype = _MallInfo2
    return mallinfo2  # type: ignore[no-any-return]


_mallinfo2 = _load_mallinfo2()


def allocated_bytes() -> int | None:
    """Bytes the C heap has handed out and not had back (small blocks plus mmapped ones); None without
    glibc's mallinfo2."""
    if _mallinfo2 is None:
        return None
    info = _mallinfo2()
    return int(info.uordblks + info.hblkhd)


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
        device_before = _device_free(device)
        heap_before = allocated_bytes()
        if heap_before is not None:
            result = build()
            heap_after = allocated_bytes()
            grown = (heap_after or 0) - heap_before
        else:
            trim()
            before = resident_bytes()
            result = build()
            trim()
            grown = resident_bytes() - before
        device_after = _device_free(device)
    if device_before is not None and device_after is not None:
        grown += device_before - device_after
    return result, max(grown, 0)
