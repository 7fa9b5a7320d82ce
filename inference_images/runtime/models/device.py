"""Where a model runs: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

An explicit CUDA request on a machine without one fails the model's load with the reason (the replica
stays not-ready) rather than quietly running on the CPU: a GPU pool serving from the CPU would meet no
latency target and nobody would know why.
"""

from __future__ import annotations

import re
from collections.abc import Callable

AUTO = "auto"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(?::\d{1,2})?)$")


class DeviceUnavailableError(RuntimeError):
    pass


def parse_device(text: str) -> str:
    device = text.strip().lower()
    if not _DEVICE_RE.match(device):
        raise ValueError(f"device {text!r} must be auto, cpu, cuda or cuda:N")
    return device


def _torch_cuda() -> tuple[bool, int]:
    import torch

    available = bool(torch.cuda.is_available())
    return available, int(torch.cuda.device_count()) if available else 0


def select_device(requested: str | None, probe: Callable[[], tuple[bool, int]] = _torch_cuda) -> str:
    """The torch device string to use. ``probe`` answers (CUDA available?, device count)."""
    requested = parse_device(requested or AUTO)
    if requested == "cpu":
        return "cpu"
    available, count = probe()
    if requested == AUTO:
        return "cuda" if available else "cpu"
    if not available:
        raise DeviceUnavailableError(
            f"device {requested} requested but CUDA is not available to this process "
            "(torch.cuda.is_available() is False: no GPU, driver or CUDA build of torch)"
        )
    index = int(requested.partition(":")[2] or 0)
    if index >= count:
        raise DeviceUnavailableError(f"device {requested} requested but this process sees {count} GPU(s)")
    return requested
