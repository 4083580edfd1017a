"""NVML energy: a counter delta when measurable, `unavailable` with a reason otherwise; never invented."""

from __future__ import annotations

import sys
import types

import pytest

from tunegate.finetune.energy import EnergyMeter, combine


class _Dev:
    type = "cuda"
    index = 0


def _fake_nvml(readings: list[int]) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    it = iter(readings)
    mod.nvmlInit = lambda: None  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByUUID = lambda uuid: ("handle", uuid)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: ("index", i)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTotalEnergyConsumption = lambda h: next(it)  # type: ignore[attr-defined]
    return mod


def test_cpu_run_is_unavailable_with_reason() -> None:
    import torch

    reading = EnergyMeter(torch.device("cpu")).stop()
    assert reading.status == "unavailable" and reading.joules is None and "CPU" in reading.reason


def test_nvml_delta_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([1_000, 3_601_000]))  # millijoules
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="abc"))
    meter = EnergyMeter(_Dev())
    assert meter.handle == ("handle", "GPU-abc")
    reading = meter.stop()
    assert reading.status == "measured" and reading.joules == pytest.approx(3600.0)
    block = combine([{"status": "measured", "joules": reading.joules}, {"status": "measured", "joules": 3600.0}])
    assert block["status"] == "measured" and block["kwh"] == pytest.approx(0.002) and block["devices"] == 2


def test_missing_pynvml_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    reading = EnergyMeter(_Dev()).stop()
    assert reading.status == "unavailable" and "nvidia-ml-py" in reading.reason


def test_one_unavailable_process_makes_the_total_unavailable() -> None:
    block = combine([{"status": "measured", "joules": 10.0}, {"status": "unavailable", "reason": "old GPU"}])
    assert block == {"status": "unavailable", "kwh": None, "reason": "old GPU",
                     "method": "NVML nvmlDeviceGetTotalEnergyConsumption delta per GPU, summed"}
