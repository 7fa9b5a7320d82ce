"""The lexicon classifier on a simulated accelerator: same outputs, plus a fixed, configurable device time.

Fairness is about sharing a device (a GPU) whose time per batch is stable. On the small shared CPUs of
CI and laptops a real model's time swings with whatever else runs (the load generator, Envoy), which
would measure the operating system's scheduler, not ours. This model holds the worker for
``FAIRSHARE_SIM_BATCH_MS + rows * FAIRSHARE_SIM_ROW_MS`` per ``predict`` call, asleep like a host thread
waiting on a GPU kernel, so the worker is the bottleneck and the host cores stay free. For benchmarks and
tests only; loader ``lexicon-simulated``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from inference_images.runtime.models.base import RequestLimits, Tensor
from inference_images.runtime.models.lexicon import LIMITS as LEXICON_LIMITS
from inference_images.runtime.models.lexicon import LexiconSentimentModel

if TYPE_CHECKING:
    from inference_images.runtime.models.registry import LoaderRegistry

BATCH_MS_ENV = "FAIRSHARE_SIM_BATCH_MS"
ROW_MS_ENV = "FAIRSHARE_SIM_ROW_MS"


def _ms(env: str, default: float) -> float:
    raw = os.environ.get(env)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{env}={raw!r} must be a number of milliseconds") from None
    if not 0 <= value <= 60_000:
        raise ValueError(f"{env}={raw!r} must be between 0 and 60000 milliseconds")
    return value


class SimulatedDeviceModel(LexiconSentimentModel):
    platform = "fairshare-simulated-device"
    # Rows here cost device time (ROW_MS each), so a request runs in calls of 64 rows, between which the
    # runtime may stop it, as it would between kernel launches on a real device.
    request_limits = RequestLimits(LEXICON_LIMITS.max_rows, LEXICON_LIMITS.max_bytes, chunk_rows=64)

    def __init__(self, name: str, version: str) -> None:
        super().__init__(name, version, negation=False)
        self.batch_s = 0.010
        self.row_s = 0.002

    def load(self) -> None:
        # Read at load so a bad value makes the model not-ready with the reason, like any failed load.
        self.batch_s = _ms(BATCH_MS_ENV, 10.0) / 1000.0
        self.row_s = _ms(ROW_MS_ENV, 2.0) / 1000.0

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        start = time.perf_counter()
        outputs = super().predict(inputs)
        device_s = self.batch_s + self.row_s * len(inputs["text"].data)
        time.sleep(max(0.0, device_s - (time.perf_counter() - start)))
        return outputs

    def cost_hint(self, inputs: Mapping[str, Tensor]) -> float:
        # Device time is per row here, not per character.
        return float(len(inputs["text"].data))


def register(registry: LoaderRegistry) -> None:
    registry.register("lexicon-simulated", SimulatedDeviceModel)
