"""Energy of a run, measured or explicitly unavailable with the reason; never estimated.

- NVIDIA GPUs (`EnergyMeter`): NVML's `nvmlDeviceGetTotalEnergyConsumption`, a
  counter (millijoules since the driver loaded) on Volta and newer GPUs, read at
  the start and end of a segment for the GPU this process uses. The difference
  is that GPU's whole-board energy over the interval, including any other work
  sharing the GPU. Needs `pynvml` (the `gpu` extra: nvidia-ml-py).
- CPUs (`RaplMeter`): Linux powercap RAPL package counters
  (`/sys/class/powercap/intel-rapl:N/energy_uj`, AMD exposes the same files),
  summed over packages, with the counter's wrap-around handled. This is the
  energy of the whole CPU package(s), other processes included; reading it
  usually needs root (since 2020 kernels restrict it), and containers and VMs
  often have no such files.

Anything else gives `status: unavailable` with the reason and `kwh: null`.
`meter_for(device)` picks the meter; `run_energy` turns a reading into the
`energy` block that results.json (`provenance.energy`) and the fine-tuning
manifest carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

RAPL_ROOT = Path("/sys/class/powercap")
NVML_METHOD = "NVML nvmlDeviceGetTotalEnergyConsumption delta per GPU, summed"
RAPL_METHOD = "Linux powercap RAPL package energy_uj delta, summed over packages (whole package, other processes included)"


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




class RaplMeter:
    """Reads the RAPL package counters of the CPU(s) under `root` (the sysfs powercap folder), if it can."""

    method = RAPL_METHOD

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.reason: str | None = None
        self.domains: list[tuple[Path, int]] = []  # (energy_uj file, max_energy_range_uj)
        self.start_uj: list[int] = []
        packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1) if root.is_dir() else []
        if not packages:
            self.reason = (f"no RAPL package counters under {root} (not exposed on this machine, VM or container); "
                           "CPU energy not measured")
            return
        try:
            for p in packages:
                self.domains.append((p / "energy_uj", int((p / "max_energy_range_uj").read_text().strip())))
            self.start_uj = [int(f.read_text().strip()) for f, _ in self.domains]
        except (OSError, ValueError) as exc:
            self.domains, self.start_uj = [], []
            self.reason = f"RAPL counters not readable ({exc.__class__.__name__}: {exc}); reading them usually needs root"

    def stop(self) -> EnergyReading:
        if not self.domains:
            return EnergyReading("unavailable", None, self.reason)
        try:
            end = [int(f.read_text().strip()) for f, _ in self.domains]
        except (OSError, ValueError) as exc:
            return EnergyReading("unavailable", None, f"RAPL counters not readable at the end: {exc}")
        total_uj = 0
        for (_, wrap), start, stop in zip(self.domains, self.start_uj, end, strict=True):
            total_uj += stop - start if stop >= start else stop + wrap - start  # the counter wrapped once
        return EnergyReading("measured", total_uj / 1e6, None)


class _Meter(Protocol):
    def stop(self) -> EnergyReading: ...


def meter_for(device: Any) -> tuple[_Meter, str]:
    """The meter for a torch device (or device string) and its method sentence."""
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    if kind == "cuda":
        import torch

        return EnergyMeter(torch.device(str(device)) if isinstance(device, str) else device), NVML_METHOD
    if kind == "cpu":
        return RaplMeter(), RAPL_METHOD
    return _Unavailable(f"no energy counter for device type {kind!r}"), ""


class _Unavailable:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def stop(self) -> EnergyReading:
        return EnergyReading("unavailable", None, self.reason)


def run_energy(reading: EnergyReading, method: str, *, scope: str) -> dict[str, Any]:
    """The `energy` block of a results file: measured (kWh, J, method, scope) or unavailable (reason)."""
    if reading.status != "measured" or reading.joules is None:
        return {"status": "unavailable", "kwh": None, "reason": reading.reason or "no reading", "method": method,
                "scope": scope}
    return {"status": "measured", "kwh": reading.joules / 3.6e6, "joules": reading.joules, "method": method,
            "scope": scope}
