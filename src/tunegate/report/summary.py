"""The executive summary of report.html, and the records an audit leaves beside its runs.

Why a module of its own: the summary, the model card and the technical
documentation all state the same few facts (the verdict, the largest
regressions, how far each scorer can be trusted, the compute and energy a
candidate cost, where each run's input/output log lies), and they must state
them identically. Everything here is read from the comparison, the run
results and the fine-tuning manifests; a fact that was not recorded comes
back as None with the reason, never as an estimate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunegate.compare.models import Comparison, ModelInfo
from tunegate.core.format import fmt
from tunegate.core.results import RunResult
from tunegate.core.status import Status, severity
from tunegate.core.verdict import Verdict
from tunegate.report.scorers import scorers_used
from tunegate.run.io_log import IO_LOG_NAME

NOT_METERED = ("not recorded: this run was written by a tunegate that did not meter evaluation energy "
               "(re-run it to record NVML / RAPL readings)")
# a relative href the report may carry: folder and file names tunegate itself writes (slugged labels), nothing else
_SAFE_HREF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")


def _is_subgroup(metric: str) -> bool:
    return "/" in metric or "." in metric


def largest_regressions(comparison: Comparison, verdict: Verdict | None, k: int = 3) -> list[dict[str, Any]]:
    """The `k` headline metrics that got worse, most serious first.

    Metrics in different units cannot be ranked by size alone, so the order is:
    the gate's judgement (most severe first: incomplete, failing, inconclusive,
    passing, then ungated; `tunegate.core.status`), then whether the change is significant (p below 1 -
    confidence), then the p-value, then the size of the change.
    """
    alpha = 1 - comparison.settings.confidence
    status: dict[tuple[str, str], Status] = {}
    for cv in verdict.candidates if verdict else []:
        for o in cv.outcomes:
            key = (cv.candidate, o.metric)
            if key not in status or severity(o.status) > severity(status[key]):
                status[key] = o.status
    rows: list[dict[str, Any]] = []
    keys: list[tuple[int, int, float, float]] = []
    for c in comparison.candidates:
        for s in c.suites:
            for m in s.metrics:
                if m.delta is None or m.direction == "neutral" or _is_subgroup(m.metric):
                    continue
                gain = m.delta * m.sign
                if gain >= 0:
                    continue
                gate = status.get((c.model.label, m.name))
                significant = m.p_value is not None and m.p_value < alpha
                rows.append({"candidate": c.model.label, "metric": m.name, "m": m, "gate": gate,
                             "significant": significant, "gain": gain})
                keys.append((-severity(gate) if gate else 1, 0 if significant else 1,
                             m.p_value if m.p_value is not None else 2.0, gain))
    order = sorted(range(len(rows)), key=keys.__getitem__)
    return [rows[i] for i in order[:k]]


def scorer_validity(comparison: Comparison, runs: Mapping[str, RunResult | None]) -> list[dict[str, Any]]:
    """Per scorer behind these results (or attached): its measured agreement with human labels, or that it is unmeasured."""
    used = scorers_used(runs).names  # read from the results (`SuiteResult.scorers`), never guessed
    rows: list[dict[str, Any]] = []
    for name in used + sorted({v.scorer for v in comparison.scorer_validations} - set(used)):
        found = [v for v in comparison.scorer_validations if v.scorer == name]
        for v in found:
            rows.append({"scorer": name, "measured": True, "used": name in used, "agreement": v.agreement.text(),
                         "kappa": v.cohen_kappa.text(2), "n": v.n, "labels": Path(v.labels_file).name,
                         "labels_sha256": v.labels_sha256, "source": v.source, "sentence": v.sentence()})
        if not found:
            rows.append({"scorer": name, "measured": False, "used": True, "agreement": None, "kappa": None, "n": None,
                         "labels": None, "labels_sha256": None, "source": None,
                         "sentence": "not measured: no `tunegate validate-scorer` file is attached"})
    return rows


# ---- fine-tuning manifests and compute ----------------------------------------------------------------


def manifest_path(info: ModelInfo) -> Path | None:
    """Where the candidate's fine-tuning manifest should be: its checkpoint record names it relative to the checkpoint."""
    ft = info.finetune or {}
    rel = ft.get("manifest")
    folder = info.adapter or (info.model if ft else None)
    if not isinstance(rel, str) or not folder:
        return None
    return (Path(folder) / rel).resolve()


def load_manifest(info: ModelInfo) -> tuple[str | None, dict[str, Any] | None]:
    """(path, manifest) of a fine-tuned candidate; (path, None) when it was recorded but cannot be read now."""
    path = manifest_path(info)
    if path is None:
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return str(path), None
    return str(path), data if isinstance(data, dict) else None


def _energy_text(energy: Any, grid: float | None = None) -> str:
    """Measured kWh with its method (and CO2e only at a grid intensity the user gave), or why it was not measured."""
    if not isinstance(energy, dict):
        return "not recorded"
    if _measured(energy):
        kwh = float(energy["kwh"])
        co2 = (f"; {fmt(kwh * grid)} g CO2e at the given grid intensity of {fmt(grid)} g/kWh" if grid is not None
               else "; CO2e not computed (no grid intensity given)")
        return f"{fmt(kwh)} kWh (measured: {energy.get('method', 'method not recorded')}{co2})"
    return f"not measured: {energy.get('reason') or 'no reason recorded'}"


def grid_intensity(comparison: Comparison) -> float | None:
    """The grid carbon intensity (g CO2e per kWh) the audit's config gave, if any; never a default."""
    value = comparison.audit.grid_intensity_g_per_kwh if comparison.audit else None
    return float(value) if value is not None and value > 0 else None


def _number(x: Any, unit: str = "") -> str:
    return f"{fmt(float(x))}{unit}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "not recorded"


def _devices_text(devices: dict[str, Any]) -> str:
    """`2 x cuda, bf16` from the manifest's accelerate settings; what is not recorded is left out, not guessed."""
    kind, n, precision = devices.get("device_type"), devices.get("num_processes"), devices.get("precision")
    if kind is None:
        return "devices not recorded"
    return (f"{n} x {kind}" if n is not None else str(kind)) + (f", {precision}" if precision else "")


def _measured(energy: Any) -> bool:
    return isinstance(energy, dict) and energy.get("status") == "measured" and isinstance(energy.get("kwh"), (int, float))


def compute_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """Per model: evaluation wall time and device (from the run's provenance) and, for fine-tuned candidates,
    the training run's wall time, device-hours and energy (from its manifest). Missing facts say so."""
    rows = []
    grid = grid_intensity(comparison)
    for role, info in [("base", comparison.base)] + [("candidate", c.model) for c in comparison.candidates]:
        prov = info.provenance
        timings = prov.get("timings") or {}
        eval_energy = prov.get("energy")  # the runner's reading (tunegate.core.energy); absent in older results files
        row: dict[str, Any] = {
            "label": info.label, "role": role, "device": prov.get("device") or "not recorded",
            "eval_wall_s": timings.get("total_s"),
            "eval_wall": f"{fmt(timings['total_s'])} s" if isinstance(timings.get("total_s"), (int, float)) else "not recorded",
            "eval_energy": _energy_text(eval_energy, grid) if eval_energy is not None else NOT_METERED,
            "eval_energy_measured": _measured(eval_energy),
            "finetune": None,
        }
        path, manifest = load_manifest(info)
        if path is not None:
            if manifest is None:
                row["finetune"] = {"manifest": path, "missing": "the fine-tuning manifest could not be read at this path"}
            else:
                found = manifest.get("devices")
                devices: dict[str, Any] = found if isinstance(found, dict) else {}
                row["finetune"] = {
                    "manifest": path, "missing": None,
                    "wall": _number(manifest.get("wall_time_s"), " s"),
                    "device_hours": _number(manifest.get("device_hours")),
                    "energy": _energy_text(manifest.get("energy"), grid),
                    "energy_measured": _measured(manifest.get("energy")),
                    "devices": _devices_text(devices),
                }
        rows.append(row)
    return rows


# ---- input/output logs ----------------------------------------------------------------------------------


def io_log_links(comparison: Comparison, folder: Path | None) -> list[dict[str, Any]]:
    """Per model: the run's io_log.jsonl.gz, as a relative link when it lies under the report folder."""
    out = []
    for info in [comparison.base, *(c.model for c in comparison.candidates)]:
        href = path = None
        if info.results_path:
            log = Path(info.results_path).parent / IO_LOG_NAME
            if log.is_file():
                path = str(log)
                if folder is not None:
                    try:
                        rel = log.resolve().relative_to(Path(folder).resolve()).as_posix()
                    except ValueError:
                        rel = None
                    href = rel if rel and _SAFE_HREF.match(rel) else None
        out.append({"label": info.label, "href": href, "path": path})
    return out
