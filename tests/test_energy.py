"""Run energy: RAPL on a CPU, NVML on a GPU, `unavailable` with the reason otherwise; recorded in every results file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kinds import register, write_suite
from tunegate.backends.mock import MockBackend
from tunegate.core import energy
from tunegate.core.verdict import AuditRecord
from tunegate.run.evaluate import evaluate


def _package(root: Path, name: str, uj: int, wrap: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{wrap}\n")
    return d


def test_rapl_sums_packages_and_handles_a_wrapped_counter(tmp_path: Path) -> None:
    p0 = _package(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    p1 = _package(tmp_path, "intel-rapl:1", 9_500_000, 10_000_000)
    _package(tmp_path, "intel-rapl:0:0", 5, 10)  # a sub-domain (core): part of package 0, never counted twice
    meter = energy.RaplMeter(tmp_path)
    (p0 / "energy_uj").write_text("3500000\n")  # +2.5 J
    (p1 / "energy_uj").write_text("500000\n")  # wrapped: +1.0 J
    reading = meter.stop()
    assert reading.status == "measured" and reading.joules == pytest.approx(3.5)
    block = energy.run_energy(reading, energy.RAPL_METHOD, scope="test")
    assert block["kwh"] == pytest.approx(3.5 / 3.6e6) and block["method"] == energy.RAPL_METHOD


def test_rapl_absent_or_unreadable_says_why(tmp_path: Path) -> None:
    reading = energy.RaplMeter(tmp_path / "none").stop()
    assert reading.status == "unavailable" and reading.joules is None and "no RAPL package counters" in str(reading.reason)
    d = _package(tmp_path, "intel-rapl:0", 1, 10)
    (d / "energy_uj").write_text("not a number\n")
    reading = energy.RaplMeter(tmp_path).stop()
    assert reading.status == "unavailable" and "not readable" in str(reading.reason)
    block = energy.run_energy(reading, energy.RAPL_METHOD, scope="test")
    assert block["kwh"] is None and block["reason"] == reading.reason  # never a number that was not measured


def test_every_run_records_energy_and_device_hours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register()
    suite = write_suite(tmp_path, [{"id": str(i), "prompt": f"q{i}", "target": "a"} for i in range(4)])
    backend = MockBackend.scripted(generations={f"q{i}": "a" for i in range(4)})
    monkeypatch.setattr(energy.RaplMeter.__init__, "__defaults__", (tmp_path / "no-rapl",))
    result = evaluate(backend.spec, [str(suite)], backend=backend, cache_path=None)
    prov = result.provenance.model_dump()
    assert prov["energy"]["status"] == "unavailable" and prov["energy"]["kwh"] is None
    assert "no RAPL package counters" in prov["energy"]["reason"] and prov["energy"]["scope"].startswith("this run's device")
    assert prov["device_hours"] == pytest.approx(prov["timings"]["total_s"] / 3600, abs=1e-6)

    _package(tmp_path / "rapl", "intel-rapl:0", 0, 10**12)
    monkeypatch.setattr(energy.RaplMeter.__init__, "__defaults__", (tmp_path / "rapl",))
    result = evaluate(backend.spec, [str(suite)], backend=backend, cache_path=None)
    block = result.provenance.model_dump()["energy"]
    assert block["status"] == "measured" and block["joules"] == 0.0 and block["method"] == energy.RAPL_METHOD


def test_co2e_only_at_a_grid_intensity_the_user_gave() -> None:
    from tests.report.factory import binary, run_result, suite_result
    from tunegate.compare.comparison import compare_runs
    from tunegate.report.summary import compute_rows

    suites = [suite_result("s", {"acc": binary("1100")}, kinds={"acc": ("binary", "higher", "mean")})]
    base, cand = run_result("base", suites), run_result("cand", suites)
    base.provenance = base.provenance.model_copy(update={"energy": {"status": "measured", "kwh": 0.5, "joules": 1.8e6,
                                                                    "method": "NVML"}})
    cand.provenance = cand.provenance.model_copy(update={"energy": {"status": "unavailable", "kwh": None,
                                                                    "reason": "no RAPL package counters"}})
    comparison = compare_runs(base, [cand])
    rows = compute_rows(comparison)
    assert rows[0]["eval_energy"] == "0.5 kWh (measured: NVML; CO2e not computed (no grid intensity given))"
    assert rows[1]["eval_energy"] == "not measured: no RAPL package counters"
    comparison.audit = AuditRecord(name="a", config="audit.yaml", grid_intensity_g_per_kwh=400)
    rows = compute_rows(comparison)
    assert rows[0]["eval_energy"] == "0.5 kWh (measured: NVML; 200 g CO2e at the given grid intensity of 400 g/kWh)"
    assert rows[1]["eval_energy"] == "not measured: no RAPL package counters"  # no CO2e without a measurement
