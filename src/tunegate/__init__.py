"""tunegate: evaluation and safety-audit harness for fine-tuned language models.

The public API is what this module exports: functions and the vocabulary's
types. Import from here (`from tunegate import evaluate, compare_runs`), not
from the stage packages behind it, whose layout may change
(docs/architecture.md).

Names load on first use (PEP 562 `__getattr__`): `import tunegate` stays cheap
for the command line and for every plugin that imports a base class, while
`from tunegate import run_audit` still gives the function itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it (`module:attr` where the name there differs)
_EXPORTS: dict[str, str] = {
    # the vocabulary
    "Sample": "tunegate.core.sample",
    "GenerateRequest": "tunegate.core.request",
    "LoglikelihoodRequest": "tunegate.core.request",
    "Response": "tunegate.core.request",
    "Score": "tunegate.core.score",
    "Metric": "tunegate.core.metric",
    "ModelSpec": "tunegate.core.model_spec",
    "RunResult": "tunegate.core.results",
    "SuiteResult": "tunegate.core.results",
    "SampleResult": "tunegate.core.results",
    "Status": "tunegate.core.status",
    "AuditConfig": "tunegate.core.config",
    "Policy": "tunegate.core.config",
    "GateRule": "tunegate.core.config",
    "Verdict": "tunegate.core.verdict",
    "Comparison": "tunegate.compare.models",
    "CompareSettings": "tunegate.compare.models",
    # errors and exit codes
    "ExitCode": "tunegate.core.errors",
    "TunegateError": "tunegate.core.errors",
    "UserError": "tunegate.core.errors",
    "IncompleteError": "tunegate.core.errors",
    # plugin base classes
    "Backend": "tunegate.backends.base",
    "SuiteKind": "tunegate.suites.base",
    "Scorer": "tunegate.scorers.base",
    "get_scorer": "tunegate.scorers.base",
    # the stages, as functions
    "load_suites": "tunegate.run.suite_loader",
    "load_backend": "tunegate.run.evaluate",
    "evaluate": "tunegate.run.evaluate",
    "load_runs": "tunegate.compare.comparison",
    "compare_runs": "tunegate.compare.comparison",
    "load_policy": "tunegate.gate.verdict",
    "evaluate_policy": "tunegate.gate.verdict",
    "plan_policy": "tunegate.gate.plan",
    "write_outputs": "tunegate.report",
    "write_card": "tunegate.report.card",
    "run_audit": "tunegate.pipeline.audit",
    "run_demo": "tunegate.pipeline.demo",
    "compare_and_write": "tunegate.pipeline.commands",
    "gate_runs": "tunegate.pipeline.commands",
    "gate_and_write": "tunegate.pipeline.commands",
    "rerender": "tunegate.pipeline.commands",
    "run_finetune": "tunegate.finetune.run:finetune",  # `tunegate.finetune` is the package
    "load_recipe": "tunegate.finetune.recipe",
    "build_tiny_model": "tunegate.finetune.tiny",
}

__all__ = [  # the same names as _EXPORTS (tests/test_architecture.py checks)
    "AuditConfig", "Backend", "CompareSettings", "Comparison", "ExitCode", "GateRule", "GenerateRequest",
    "IncompleteError", "LoglikelihoodRequest", "Metric", "ModelSpec", "Policy", "Response", "RunResult", "Sample",
    "SampleResult", "Score", "Scorer", "Status", "SuiteKind", "SuiteResult", "TunegateError", "UserError",
    "Verdict", "build_tiny_model", "compare_and_write", "compare_runs", "evaluate", "evaluate_policy",
    "gate_and_write", "gate_runs", "get_scorer", "load_backend", "load_policy", "load_recipe", "load_runs",
    "load_suites", "plan_policy", "rerender", "run_audit", "run_demo", "run_finetune", "write_card",
    "write_outputs",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` below imports on first use
    from tunegate.backends.base import Backend
    from tunegate.compare.comparison import compare_runs, load_runs
    from tunegate.compare.models import CompareSettings, Comparison
    from tunegate.core.config import AuditConfig, GateRule, Policy
    from tunegate.core.errors import ExitCode, IncompleteError, TunegateError, UserError
    from tunegate.core.metric import Metric
    from tunegate.core.model_spec import ModelSpec
    from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response
    from tunegate.core.results import RunResult, SampleResult, SuiteResult
    from tunegate.core.sample import Sample
    from tunegate.core.score import Score
    from tunegate.core.status import Status
    from tunegate.core.verdict import Verdict
    from tunegate.finetune.recipe import load_recipe
    from tunegate.finetune.run import finetune as run_finetune
    from tunegate.finetune.tiny import build_tiny_model
    from tunegate.gate.plan import plan_policy
    from tunegate.gate.verdict import evaluate_policy, load_policy
    from tunegate.pipeline.audit import run_audit
    from tunegate.pipeline.commands import compare_and_write, gate_and_write, gate_runs, rerender
    from tunegate.pipeline.demo import run_demo
    from tunegate.report import write_outputs
    from tunegate.report.card import write_card
    from tunegate.run.evaluate import evaluate, load_backend
    from tunegate.run.suite_loader import load_suites
    from tunegate.scorers.base import Scorer, get_scorer
    from tunegate.suites.base import SuiteKind


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'tunegate' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
