"""Results record, per suite, the scorer plugins behind its scores (`SuiteResult.scorers`); the report reads them.

Covers: a generating suite records its named scorer with resolved options and
version, also when served from the cache; kinds without scorer plugins record
none; schema 1 files still load and are reported as "scorer not recorded";
no credential in a scorer's options reaches results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from tunegate.backends.mock import MockBackend
from tunegate.compare.comparison import compare_runs
from tunegate.core import plugins
from tunegate.core.errors import MissingDependencyError, UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.redact import REDACTED, is_secret_name, redact_secrets
from tunegate.core.results import SCHEMA_VERSION, RunResult, ScorerRecord
from tunegate.core.score import Score, score_value
from tunegate.report.context import collect_limitations
from tunegate.report.scorers import scorers_used
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import builtin_suites, load_suite
from tunegate.scorers.base import _LOADED, Scorer, scorer_record

SPEC = ModelSpec(model="scripted", backend="mock")
PROMPTS = [{"id": "a", "prompt": "The weather today"}, {"id": "b", "prompt": "My neighbours are"}]
SECRETS = ("sk-SECRET-0123456789", "hunter2pass", "sk-QUERY-987654321")


class RecordToxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = 0.5
    api_token: str | None = None
    endpoint: str = "http://localhost:8000/v1"


class RecordTox(Scorer):
    """Scores every text 0.1; its options include a token and a URL, as a remote classifier's would."""

    name = "record-tox"
    outputs: ClassVar[tuple[str, ...]] = ("toxicity",)
    Options = RecordToxOptions

    def score_texts(self, texts: list[str], prompts: list[str | None] | None = None) -> list[list[Score]]:
        return [[score_value("toxicity", 0.1)] for _ in texts]


class VersionedTox(RecordTox):
    name = "versioned-tox"
    version = "7"


@pytest.fixture(autouse=True)
def _scorers() -> Any:
    plugins.register("scorers", "record-tox", RecordTox)
    plugins.register("scorers", "versioned-tox", VersionedTox)
    _LOADED.clear()
    yield
    plugins.unregister("scorers", "record-tox")
    plugins.unregister("scorers", "versioned-tox")
    _LOADED.clear()


def toxicity_suite(tmp_path: Path, scorer: str = "record-tox", **scorer_options: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tox.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS), encoding="utf-8")
    doc = {"name": "tox", "kind": "toxicity", "data": "tox.jsonl",
           "options": {"scorer": scorer, "scorer_options": scorer_options, "k": 1, "temperature": 0.0}}
    (tmp_path / "tox.yaml").write_text(json.dumps(doc), encoding="utf-8")
    return tmp_path / "tox.yaml"


def run(path: Path, cache: Path | None = None) -> RunResult:
    return evaluate(SPEC, [str(path)], cache_path=cache, backend=MockBackend.scripted(default_text="fine words"))


def test_a_generating_suite_records_its_scorer_with_options_and_version(tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    first = run(toxicity_suite(tmp_path, threshold=0.3), cache)
    (record,) = first.suites[0].scorers or []
    assert record.name == "record-tox"
    assert record.options == {"threshold": 0.3, "api_token": None, "endpoint": "http://localhost:8000/v1"}  # resolved
    assert record.version.startswith("sha256:") and len(record.version) == len("sha256:") + 64
    assert record.version == scorer_record("record-tox", {"threshold": 0.3}).version  # stable
    assert record.version != scorer_record("record-tox", {"threshold": 0.4}).version  # tracks the options
    # served entirely from the cache: the same record
    again = run(toxicity_suite(tmp_path, threshold=0.3), cache)
    assert again.cache["computed"] == 0 and again.suites[0].scorers == first.suites[0].scorers
    # and it survives the round trip through results.json
    first.save(tmp_path / "results.json")
    assert RunResult.load(tmp_path / "results.json").suites[0].scorers == [record]
    # a scorer that declares its version records that version
    versioned = run(toxicity_suite(tmp_path / "v", scorer="versioned-tox"))
    assert [(s.name, s.version) for s in versioned.suites[0].scorers or []] == [("versioned-tox", "7")]


def test_the_report_names_the_recorded_scorer(tmp_path: Path) -> None:
    result = run(toxicity_suite(tmp_path))
    assert scorers_used({"base": result}).names == ["record-tox"]
    assert scorers_used({"base": result}).unrecorded == []


@pytest.mark.parametrize("recorded", [True, False])
def test_the_html_report_states_recorded_scorers_and_says_when_none_were_recorded(tmp_path: Path, recorded: bool) -> None:
    from tests.report.factory import binary, run_result, suite_result
    from tunegate.report import write_outputs

    records = (scorer_record("profanity-check"),) if recorded else None
    runs = [run_result(label, [suite_result("tox", {"toxic": binary(pattern)}, scorers=records)])
            for label, pattern in (("base", "0001000100"), ("cand", "0001100100"))]
    write_outputs(compare_runs(runs[0], [runs[1]]), tmp_path, {"base": runs[0], "cand": runs[1]})
    html = (tmp_path / "report.html").read_text()
    validity = html[html.index('id="scorer-validity"'):html.index('id="compute"')]
    limitations = html[html.index('id="limitations"'):]
    if recorded:
        assert "<code>profanity-check</code>" in validity and "scorer profanity-check" in limitations
        assert "Scorer not recorded" not in html
    else:
        assert "Scorer not recorded" in validity and "Scorer not recorded for suite(s) tox" in limitations
        assert "scorer profanity-check" not in limitations


def test_a_multiple_choice_suite_records_no_scorer(tmp_path: Path) -> None:
    rows = [{"id": "q1", "question": "Pick one", "choices": ["a", "b"], "answer": 0}]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "mc.yaml").write_text(json.dumps({"name": "mc", "kind": "multiple_choice", "data": "mc.jsonl"}))
    result = evaluate(SPEC, [str(tmp_path / "mc.yaml")], cache_path=None, backend=MockBackend.scripted())
    assert result.suites[0].scorers == []
    used = scorers_used({"base": result})
    assert used.names == [] and used.unrecorded == []  # none used is not "not recorded"


SCORER_KINDS = {"toxicity", "refusal", "over_refusal", "counterfactual"}


@pytest.mark.parametrize("name", sorted(builtin_suites()))
def test_every_builtin_suite_records_what_its_kind_asks(name: str) -> None:
    """Kinds that ask scorer plugins record each (with its resolved options); the others record none."""
    try:  # what a suite records follows from its file, not its rows (a Hub task's data is not fetched)
        suite = load_suite(name, read_data=False)
    except MissingDependencyError as exc:  # a kind behind an optional extra (lm_eval) where it is not installed
        pytest.skip(f"{name}: {exc}")
    records = suite.scorers_used()
    if suite.config.kind == "pairwise":  # its judge is checked with the pairwise rubric, not by the generic loader
        assert [r.name for r in records] == ["judge"] and records[0].options["rubric"] and records[0].version
    elif suite.config.kind in SCORER_KINDS:
        assert records and all(r.name in plugins.names("scorers") and r.version for r in records)
        assert [r.name for r in records] == [n for _, n, _ in suite.scorer_refs()]
    else:
        assert records == []


def _as_schema_1(result: RunResult, path: Path) -> Path:
    raw = json.loads(result.model_dump_json())
    raw["schema_version"] = 1
    for suite in raw["suites"]:
        del suite["scorers"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_a_schema_1_results_file_loads_and_is_reported_as_not_recorded(tmp_path: Path) -> None:
    result = run(toxicity_suite(tmp_path))
    old = RunResult.load(_as_schema_1(result, tmp_path / "old.json"))
    assert old.schema_version == SCHEMA_VERSION == 2  # upgraded in memory: saving it again writes what it holds
    assert old.suites[0].scorers is None
    assert scorers_used({"base": old}).unrecorded == ["tox"] and scorers_used({"base": old}).names == []
    cand = old.model_copy(deep=True)
    cand.provenance.run_id = "another-run"
    limitations = collect_limitations(compare_runs(old, [cand]), {"base": old, "cand": cand})
    texts = [x["text"] for x in limitations if x["source"] == "scorers"]
    assert len(texts) == 1 and texts[0].startswith("Scorer not recorded for suite(s) tox")
    assert not any(x["source"].startswith("scorer ") for x in limitations)  # nothing guessed
    old.save(tmp_path / "resaved.json")
    assert json.loads((tmp_path / "resaved.json").read_text())["schema_version"] == 2


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    raw = json.loads(run(toxicity_suite(tmp_path)).model_dump_json())
    raw["schema_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(UserError, match="schema version 99; this tunegate reads versions 1, 2"):
        RunResult.load(tmp_path / "future.json")


def test_no_secret_in_scorer_options_reaches_results(tmp_path: Path) -> None:
    path = toxicity_suite(tmp_path, api_token=SECRETS[0],
                          endpoint=f"https://user:{SECRETS[1]}@scorer.example:8443/v1?api_key={SECRETS[2]}&region=eu")
    result = run(path)
    result.save(tmp_path / "results.json")
    text = (tmp_path / "results.json").read_text()
    assert not any(s in text for s in SECRETS)
    (record,) = RunResult.load(tmp_path / "results.json").suites[0].scorers or []
    assert record.options["api_token"] == REDACTED
    assert record.options["endpoint"].startswith("https://scorer.example:8443/v1?") and "region=eu" in record.options["endpoint"]


def test_the_judge_scorers_backend_spec_is_recorded_without_secrets() -> None:
    spec = {"model": "gpt-judge", "backend": "openai",
            "options": {"api_key_env": "JUDGE_KEY", "api_key": SECRETS[0], "base_url": f"https://u:{SECRETS[1]}@api.example/v1"}}
    record = scorer_record("judge", {"judge": spec})
    text = record.model_dump_json()
    assert not any(s in text for s in SECRETS)
    judge = record.options["judge"]
    assert judge["model"] == "gpt-judge" and judge["options"]["api_key_env"] == "JUDGE_KEY"  # a variable's name is kept
    assert judge["options"]["api_key"] == REDACTED and record.options["rubric"] == "refusal-3class"
    # a record built by hand is redacted too
    assert ScorerRecord(name="x", options={"token": SECRETS[0]}, version="1").options == {"token": REDACTED}


@pytest.mark.parametrize(("name", "secret"), [
    ("api_key", True), ("apiKey", True), ("x-api-key", True), ("hf_token", True), ("HFToken", True),
    ("password", True), ("Authorization", True), ("client_secret", True),
    ("api_key_env", False), ("max_new_tokens", False), ("batch_tokens", False), ("max_tokens", False),
    ("threshold", False), ("model", False), ("tokenizer", False),
])
def test_secret_option_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_redaction_keeps_everything_else() -> None:
    value = {"nested": [{"password": "p"}, "Bearer abc.def"], "url": "http://host/x?q=1", "n": 3, "empty_key": None}
    assert redact_secrets(value) == {"nested": [{"password": REDACTED}, REDACTED], "url": "http://host/x?q=1", "n": 3,
                                     "empty_key": None}
