"""GPU energy from NVML, measured or explicitly unavailable; never estimated.

NVML's `nvmlDeviceGetTotalEnergyConsumption` is a counter (millijoules since
the driver loaded) on Volta and newer NVIDIA GPUs. The meter reads it at the
start and end of a training segment for the GPU this process uses; the
difference is that GPU's whole-board energy over the interval (including any
other work sharing the GPU). Anything else (a CPU run, no `pynvml`, an old
GPU) gives `status: unavailable` with the reason, and `kwh: null`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class EnergyReading:
    """Energy of one process's device over one segment."""

    status: str  # "measured" | "unavailable"
    joules: float | None
    reason: str | None = None


class EnergyMeter:
    """Reads the NVML energy counter of one CUDA device, if it can."""

    def __init__(self, device: Any) -> None:
        self.handle: Any = None
        self.reason: str | None = None
        self.start_mj: int | None = None
        self._nvml: Any = None
        if getattr(device, "type", str(device)) != "cuda":
            self.reason = "no NVIDIA GPU in use (CPU run); NVML energy counters do not apply"
            return
        try:
            # nvidia-ml-py (optional, the gpu extra) ships no type information: mypy says import-untyped where it is
            # installed and import-not-found where it is not, so the ignore names both
            import pynvml
        except ImportError:
            self.reason = "pynvml is not installed; run: pip install 'tunegate[gpu]' (nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handle = self._handle_for(pynvml, device)
            self.start_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as exc:  # NVMLError subclasses vary by driver; any failure means "not measured"
            self.handle = None
            self.reason = f"NVML energy counter not readable: {exc}"

    @staticmethod
    def _handle_for(pynvml: Any, device: Any) -> Any:
        """Match the torch device to its NVML handle by UUID (CUDA_VISIBLE_DEVICES may renumber)."""
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        uuid = getattr(props, "uuid", None)
        if uuid is not None:
            text = str(uuid)
            for candidate in (text if text.startswith("GPU-") else f"GPU-{text}", text):
                try:
                    return pynvml.nvmlDeviceGetHandleByUUID(candidate)
                except Exception:
                    continue
        return pynvml.nvmlDeviceGetHandleByIndex(index)

    def stop(self) -> EnergyReading:
        if self.handle is None or self.start_mj is None:
            return EnergyReading("unavailable", None, self.reason)
        try:
            end = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as exc:
            return EnergyReading("unavailable", None, f"NVML energy counter not readable at the end: {exc}")
        return EnergyReading("measured", (end - self.start_mj) / 1000.0, None)


def combine(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-process readings into the manifest's `energy` block; one unavailable makes it unavailable."""
    reasons = sorted({r.get("reason") or "" for r in readings if r.get("status") != "measured"} - {""})
    if not readings or reasons:
        return {"status": "unavailable", "kwh": None, "reason": "; ".join(reasons) or "no reading",
                "method": "NVML nvmlDeviceGetTotalEnergyConsumption delta per GPU, summed"}
    joules = sum(float(r["joules"]) for r in readings)
    return {"status": "measured", "kwh": joules / 3.6e6, "joules": joules, "devices": len(readings),
            "method": "NVML nvmlDeviceGetTotalEnergyConsumption delta per GPU, summed"}
