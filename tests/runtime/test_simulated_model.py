"""The benchmark's simulated-accelerator model: the lexicon's answers, its device time read at load."""

from __future__ import annotations

import pytest

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.simulated import BATCH_MS_ENV, ROW_MS_ENV, SimulatedDeviceModel


def test_answers_like_the_lexicon_with_the_configured_device_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BATCH_MS_ENV, "1")
    monkeypatch.setenv(ROW_MS_ENV, "0.5")
    model = SimulatedDeviceModel("c", "v1")
    model.load()
    assert (model.batch_s, model.row_s) == (0.001, 0.0005)
    inputs = {"text": Tensor("text", "BYTES", (2,), ["great", "awful"])}
    label, _ = model.predict(inputs)
    assert label.data == ["positive", "negative"]
    assert model.cost_hint(inputs) == 2.0  # device time is per row


@pytest.mark.parametrize("value", ["fast", "-1", "1e9"])
def test_a_bad_device_time_fails_the_load_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(BATCH_MS_ENV, value)
    with pytest.raises(ValueError, match=BATCH_MS_ENV):
        SimulatedDeviceModel("c", "v1").load()
