"""Fine-tuning energy: the meters live in `tunegate.core.energy` (one home for evaluation and training); this module
sums the per-process readings of a training run into each segment's `energy` block, and the segments' blocks into the
manifest's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunegate.core.energy import NVML_METHOD, EnergyMeter, EnergyReading

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["EnergyMeter", "EnergyReading", "combine", "run_energy", "segment_energy"]


def combine(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-process readings into the manifest's `energy` block; one unavailable makes it unavailable."""
    reasons = sorted({r.get("reason") or "" for r in readings if r.get("status") != "measured"} - {""})
    if not readings or reasons:
        return {"status": "unavailable", "kwh": None, "reason": "; ".join(reasons) or "no reading",
                "method": NVML_METHOD}
    joules = sum(float(r["joules"]) for r in readings)
    return {"status": "measured", "kwh": joules / 3.6e6, "joules": joules, "devices": len(readings),
            "method": NVML_METHOD}


def segment_energy(meter: EnergyMeter, acc: Accelerator, collective: bool) -> dict[str, Any]:
    """Stop this process's meter and sum every process's reading into the segment's block.

    `collective`: every process is calling it now (a checkpoint, the end of the run), so the readings can be
    gathered; otherwise (an interruption) a multi-process run cannot know the others' readings.
    """
    reading = meter.stop()
    mine = {"status": reading.status, "joules": reading.joules, "reason": reading.reason}
    if collective and acc.num_processes > 1:
        from accelerate.utils import gather_object

        return combine(list(gather_object([mine])))
    if acc.num_processes > 1:
        return combine([{"status": "unavailable", "reason": "run interrupted before all processes reported"}])
    return combine([mine])


def run_energy(segments: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """The manifest's `energy` block: the sum over the run's segments, unavailable if any segment's is."""
    energies = [s["energy"] for s in segments]
    energy = (combine([{"status": "measured", "joules": e["joules"]} for e in energies])
              if energies and all(e.get("status") == "measured" for e in energies)
              else combine([{"status": "unavailable", "reason": e.get("reason")} for e in energies
                            if e.get("status") != "measured"]))
    if status != "complete" and energy["status"] == "unavailable":
        energy["reason"] = energy.get("reason") or "run not complete"
    return energy
