"""Fine-tuning energy: the meters live in `tunegate.core.energy` (one home for evaluation and training); this module
sums the per-process readings of a training run into its manifest's `energy` block."""

from __future__ import annotations

from typing import Any

from tunegate.core.energy import NVML_METHOD, EnergyMeter, EnergyReading

__all__ = ["EnergyMeter", "EnergyReading", "combine"]


def combine(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-process readings into the manifest's `energy` block; one unavailable makes it unavailable."""
    reasons = sorted({r.get("reason") or "" for r in readings if r.get("status") != "measured"} - {""})
    if not readings or reasons:
        return {"status": "unavailable", "kwh": None, "reason": "; ".join(reasons) or "no reading",
                "method": NVML_METHOD}
    joules = sum(float(r["joules"]) for r in readings)
    return {"status": "measured", "kwh": joules / 3.6e6, "joules": joules, "devices": len(readings),
            "method": NVML_METHOD}
