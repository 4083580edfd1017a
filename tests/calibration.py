"""benchmarks/gate_calibration.py as a module, for the tests that simulate gates through the real compare + gate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_calibration.py"


def load_calibration() -> ModuleType:
    """The simulation module (skips where benchmarks/ is absent, e.g. an installed wheel)."""
    if not SCRIPT.is_file():
        pytest.skip("benchmarks/ is not shipped in the wheel")
    if "gate_calibration" in sys.modules:
        return sys.modules["gate_calibration"]
    spec = importlib.util.spec_from_file_location("gate_calibration", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gate_calibration"] = mod
    spec.loader.exec_module(mod)
    return mod
