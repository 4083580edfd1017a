"""A minimal suite kind used by core tests, registered in-process (no packaging needed)."""

from __future__ import annotations

from pathlib import Path

from tunegate.core import plugins
from tunegate.core.data import Row
from tunegate.core.metric import Metric
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Request, Response
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_error, score_value
from tunegate.suites.base import SkipSample, SuiteKind, metric_from_scores


class EchoKind(SuiteKind):
    """Asks one generation and one log-likelihood per row; `exact` compares the generation to the target."""

    name = "echo_test"
    description = "test kind"
    default_fields = {"id": "id", "prompt": "prompt", "target": "target"}

    def to_sample(self, row: Row) -> Sample:
        prompt = row.get("prompt", str)
        if not prompt.strip():
            raise row.fail("prompt", "is empty")
        return Sample(id=self.row_id(row), input=prompt, target=row.get("target", str),
                      metadata={"skip": bool(row.get("skip", bool, default=False)),
                                "crash": bool(row.get("crash", bool, default=False))})

    def requests(self, sample: Sample) -> list[Request]:
        if sample.metadata["skip"]:
            raise SkipSample("marked skip in the data")
        return [GenerateRequest(prompt=sample.input, max_new_tokens=8),
                LoglikelihoodRequest(context=sample.input, continuation=" " + str(sample.target))]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        if sample.metadata["crash"]:
            return [score_error("exact", "scorer could not score this text")]
        return [score_value("exact", (responses[0].text or "").strip() == sample.target),
                score_value("ll", responses[1].loglikelihood or 0.0)]

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        return [metric_from_scores("accuracy", results, "exact", kind="binary"),
                metric_from_scores("mean_ll", results, "ll")]


def register() -> None:
    plugins.register("suites", "echo_test", EchoKind)


def write_suite(folder: Path, rows: list[dict], name: str = "echo", extra: str = "") -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nkind: echo_test\nversion: 1\ndescription: test suite\ndata: {name}.jsonl\n{extra}")
    return path
