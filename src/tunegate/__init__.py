"""tunegate: evaluation and safety-audit harness for fine-tuned language models.

The public API is re-exported here; module layout behind it may change.
"""

from tunegate.backend import Backend
from tunegate.errors import ExitCode, IncompleteError, TunegateError, UserError
from tunegate.metric import Metric
from tunegate.model_spec import ModelSpec
from tunegate.request import GenerateRequest, LoglikelihoodRequest, Response
from tunegate.results import RunResult, SampleResult, SuiteResult
from tunegate.sample import Sample
from tunegate.score import Score
from tunegate.suite import SuiteKind

__all__ = [
    "Backend", "ExitCode", "GenerateRequest", "IncompleteError", "LoglikelihoodRequest", "Metric", "ModelSpec",
    "Response", "RunResult", "Sample", "SampleResult", "Score", "SuiteKind", "SuiteResult", "TunegateError", "UserError",
]
