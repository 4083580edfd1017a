"""The `general_capabilities` group: the shipped suites, run offline from the datasets cache, compared and gated.

The Hub datasets the five lm-eval tasks name (allenai/ai2_arc, Rowan/hellaswag,
cais/mmlu with its 57 subject configs, openai/gsm8k, wmt/wmt16) are stood in for
by tiny copies in the local datasets cache, laid out as an online
`load_dataset` leaves them (tests/hub_cache.py); with offline mode on,
lm-eval's own task definitions load them from there, which is what a user
offline-with-cache gets. The shipped suite files are used as they are, except
`expected_docs` (the shipped sizes are the real test sets; the check is
tested too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.calibration import load_calibration
from tests.cli import run_cli
from tests.hub_cache import cache_hub_dataset
from tunegate.core.config import Policy, load_yaml_model
from tunegate.core.errors import UserError
from tunegate.core.request import Response
from tunegate.core.results import RunResult

try:
    import lm_eval  # noqa: F401

    HAVE_LM_EVAL = True
except ImportError:
    HAVE_LM_EVAL = False
pytestmark = pytest.mark.skipif(not HAVE_LM_EVAL, reason="lm-eval is not installed: pip install 'tunegate[lm_eval]'")

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
POLICY = ROOT / "policies" / "general_capabilities.yaml"
MEMBERS = ["arc_easy", "hellaswag", "mmlu_subset", "gsm8k", "wmt16_de_en"]
SHIPPED_SIZES = {"arc_easy": 2376, "hellaswag": 3000, "mmlu_subset": 3420, "gsm8k": 1319, "wmt16_de_en": 2999}
WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "light", "table", "paper", "music"]


def _mmlu_subjects() -> list[str]:
    import lm_eval as le

    folder = Path(le.__file__).parent / "tasks" / "mmlu" / "default"
    return sorted(yaml.safe_load(p.read_text())["dataset_name"] for p in folder.glob("mmlu_*.yaml"))


def _arc(i: int) -> dict[str, Any]:
    return {"id": f"arc{i}", "question": f"Which is {WORDS[i % 10]}?",
            "choices": {"text": [WORDS[(i + k) % 10] for k in range(4)], "label": ["A", "B", "C", "D"]},
            "answerKey": "ABCD"[i % 4]}


def _hellaswag(i: int) -> dict[str, Any]:
    return {"ind": i, "activity_label": "Cooking", "ctx_a": f"A man takes the {WORDS[i % 10]}.",
            "ctx_b": "then he", "ctx": "", "endings": [f"puts it on the {WORDS[(i + k) % 10]}." for k in range(4)],
            "source_id": f"x{i}", "split": "val", "split_type": "indomain", "label": str(i % 4)}


def _mmlu(subject: str, i: int) -> dict[str, Any]:
    return {"question": f"{subject[:6]} {WORDS[i % 10]}?", "subject": subject,
            "choices": [WORDS[(i + k) % 10] for k in range(4)], "answer": i % 4}


def _gsm8k(i: int) -> dict[str, Any]:
    return {"question": f"Tom has {i} apples and buys 2. How many?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}


def _wmt(i: int) -> dict[str, Any]:
    de = ["Das Haus ist rot.", "Ich trinke Wasser.", "Der Hund schläft.", "Wir gehen heute.", "Es regnet."]
    en = ["The house is red.", "I drink water.", "The dog is sleeping.", "We are going today.", "It is raining."]
    return {"translation": {"de": de[i % 5], "en": en[i % 5]}}


TINY_SIZES = {"arc_easy": 6, "hellaswag": 6, "mmlu_subset": 2 * 57, "gsm8k": 3, "wmt16_de_en": 5}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five datasets, tiny, in one datasets cache (built once for the module)."""
    cache = tmp_path_factory.mktemp("gc") / "hf-datasets-cache"
    cache.mkdir()
    cache_hub_dataset(cache, "allenai/ai2_arc", {"test": [_arc(i) for i in range(6)], "train": [_arc(7)],
                                                 "validation": [_arc(8)]}, config="ARC-Easy")
    cache_hub_dataset(cache, "Rowan/hellaswag", {"validation": [_hellaswag(i) for i in range(6)],
                                                 "train": [_hellaswag(9)]})
    for subject in _mmlu_subjects():
        cache_hub_dataset(cache, "cais/mmlu", {"test": [_mmlu(subject, i) for i in range(2)],
                                               "dev": [_mmlu(subject, 10 + i) for i in range(5)]}, config=subject)
    cache_hub_dataset(cache, "openai/gsm8k", {"test": [_gsm8k(i) for i in range(3)],
                                              "train": [_gsm8k(20 + i) for i in range(5)]}, config="main")
    cache_hub_dataset(cache, "wmt/wmt16", {"test": [_wmt(i) for i in range(5)], "validation": [_wmt(0)],
                                           "train": [_wmt(1)]}, config="de-en")
    return cache


@pytest.fixture
def offline_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub_cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return hub_cache


@pytest.fixture
def tiny_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped member suites, verbatim but for expected_docs (the tiny counts), first on the suite path."""
    folder = tmp_path / "suites"
    folder.mkdir()
    for name in MEMBERS:
        doc = yaml.safe_load((SUITES / f"{name}.yaml").read_text())
        assert doc["options"]["expected_docs"] == SHIPPED_SIZES[name]
        doc["options"]["expected_docs"] = TINY_SIZES[name]
        if "task_yaml" in doc["options"]:  # shipped task files are allowed data; point at them
            doc["options"]["task_yaml"] = str(SUITES / doc["options"]["task_yaml"])
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("TUNEGATE_SUITES_PATH", str(folder))
    return folder


@pytest.fixture(scope="module")
def window_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny GPT-2s with a 1024-token window (five-shot MMLU and GSM8K prompts fit)."""
    from tunegate.finetune.tiny import build_tiny_model

    return (build_tiny_model(tmp_path_factory.mktemp("gc-base"), "gpt2", seed=0, n_positions=1024),
            build_tiny_model(tmp_path_factory.mktemp("gc-cand"), "gpt2", seed=1, n_positions=1024))


def test_group_runs_offline_from_the_cache_through_compare_and_gate(
        offline_cache: Path, tiny_suites: Path, window_models: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    for label, model in zip(("base", "cand"), window_models, strict=True):
        code, out, err = run_cli(["run", "--model", str(model), "--label", label, "--suites", "general_capabilities",
                                  "--out", str(tmp_path / label)], capsys)
        assert code == 0, out + err
    base = RunResult.load(tmp_path / "base" / "results.json")
    assert [s.name for s in base.suites] == MEMBERS
    for s in base.suites:
        assert s.counts == {"scored": TINY_SIZES[s.name], "errored": 0, "skipped": 0}, s.name
    ds = {s.name: s.data_source or {} for s in base.suites}
    assert ds["arc_easy"]["dataset_path"] == "allenai/ai2_arc" and ds["arc_easy"]["dataset_name"] == "ARC-Easy"
    assert ds["mmlu_subset"]["lm_eval_subtasks"] == 57 and ds["mmlu_subset"]["num_fewshot"] == 5
    assert ds["gsm8k"]["num_fewshot"] == 5 and ds["wmt16_de_en"]["dataset_path"] == "wmt/wmt16"
    mmlu = base.suite("mmlu_subset")
    assert mmlu is not None and "mmlu_abstract_algebra/0" in {r.id for r in mmlu.samples}
    # every metric the policy gates exists with one value per document
    policy = load_yaml_model(POLICY, Policy)
    for rule in policy.rules:
        suite, _, metric = rule.metric.partition("/")
        sr = base.suite(suite)
        m = sr.metric(metric) if sr else None
        assert m is not None and len(m.per_sample) == TINY_SIZES[suite], rule.metric
    wmt = base.suite("wmt16_de_en")
    assert wmt is not None and {"bleu", "chrf", "ter"} <= {m.name for m in wmt.metrics}  # lm-eval's corpus scores
    code, out, err = run_cli(["gate", str(tmp_path / "base"), str(tmp_path / "cand"), "--policy", str(POLICY),
                              "--out", str(tmp_path / "report")], capsys)
    assert code in (0, 1), out + err  # decided or inconclusive at these sizes, never a tool failure
    comparison = json.loads((tmp_path / "report" / "comparison.json").read_text())
    outcomes = comparison["verdict"]["candidates"][0]["outcomes"]
    assert len(outcomes) == 5 and all(o["status"] in ("pass", "fail", "inconclusive") for o in outcomes), outcomes
    # the report says where each suite's data came from
    suites = {s["name"]: s for s in comparison["candidates"][0]["suites"]}
    assert suites["mmlu_subset"]["data_source"]["dataset_path"] == "cais/mmlu"
    html = (tmp_path / "report" / "report.html").read_text()
    assert "allenai/ai2_arc" in html and "<code>wmt/wmt16</code>" in html


def test_shipped_sizes_are_checked_when_the_task_loads(offline_cache: Path) -> None:
    from tunegate.run.suite_loader import load_suite

    with pytest.raises(UserError, match=r"built 6 documents, the suite expects 2376 \(options.expected_docs\)"):
        load_suite(str(SUITES / "arc_easy.yaml"))


def test_offline_without_the_cache_names_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    code, out, err = run_cli(["run", "--model", "unused", "--suites", "arc_easy", "--out", str(tmp_path / "o")], capsys)
    assert code == 2, out + err
    assert "arc_easy" in err and "allenai/ai2_arc" in err and "offline mode is on" in err


def _scored(suite: Any, texts: dict[str, str]) -> dict[str, dict[str, float]]:
    samples = [s for s in suite.samples() if s.id in texts]
    scores = suite.score_batch(samples, [[Response(kind="generate", text=texts[s.id])] for s in samples])
    return {s.id: {x.name: x.value for x in sc} for s, sc in zip(samples, scores, strict=True)}


def test_gsm8k_strict_extractor_reads_only_the_marked_answer(offline_cache: Path, tiny_suites: Path) -> None:
    from tunegate.run.suite_loader import load_suite

    suite = load_suite("gsm8k")
    got = _scored(suite, {"0": "0 + 2 = 2\n#### 2", "1": "He has 3 apples, so the answer is 3.", "2": "#### 5"})
    # doc 0: answer 2 written as "#### 2"; doc 1: right number, no marker; doc 2: marked but wrong (gold 4)
    assert [got[i]["exact_match_strict-match"] for i in "012"] == [1.0, 0.0, 0.0]
    assert [got[i]["exact_match_flexible-extract"] for i in "012"] == [1.0, 1.0, 0.0]


def test_translation_sentence_chrf_is_sacrebleus(offline_cache: Path, tiny_suites: Path) -> None:
    import sacrebleu

    from tunegate.run.suite_loader import load_suite

    suite = load_suite("wmt16_de_en")
    got = _scored(suite, {"0": " The house is red.", "1": " I am drinking some water"})
    assert got["0"]["chrf_sentence"] == pytest.approx(100.0)
    want = sacrebleu.sentence_chrf("I am drinking some water", ["I drink water."]).score
    assert got["1"]["chrf_sentence"] == pytest.approx(want, abs=1e-9) and 0 < want < 100


def test_plan_uses_the_declared_sizes_without_any_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The figures docs/general-capabilities.md quotes, computed by `tunegate plan` offline with no cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    assume = ["--assume", "arc_easy/acc=0.8", "--assume", "hellaswag/acc_norm=0.75", "--assume", "mmlu_subset/acc=0.6",
              "--assume", "gsm8k/exact_match_strict-match=0.45"]
    code, out, err = run_cli(["plan", "--policy", str(POLICY), *assume, "--redraw", "0.25", "--json"], capsys)
    assert code == 0, out + err
    plans = {p["metric"].split("/")[0]: p for p in json.loads(out)}
    assert {k: p["n_have"] for k, p in plans.items()} == SHIPPED_SIZES
    binary = [plans[k] for k in ("arc_easy", "hellaswag", "mmlu_subset", "gsm8k")]
    assert all(p["p_pass"] >= 0.99 for p in binary)  # an equal candidate passes
    assert [round(p["p_fail"], 3) for p in binary] == [0.929, 0.962, 0.959, 0.948]  # twice the tolerance fails
    assert plans["wmt16_de_en"]["status"] == "unknown"  # continuous: needs the base run's spread


def test_policy_decides_at_the_shipped_sizes() -> None:
    """Simulated gates through the real compare + gate: equal candidates pass, a doubled-tolerance drop fails.

    The four pass/fail rules (Holm over those four; the continuous chrF rule
    needs a model's own spread) at the shipped sizes and the documented rates,
    redraw share 0.25.
    """
    calib = load_calibration()
    full = load_yaml_model(POLICY, Policy)
    policy = full.model_copy(update={"rules": [r for r in full.rules if not r.metric.startswith("wmt16_de_en/")]})
    rates = {"arc_easy": 0.8, "hellaswag": 0.75, "mmlu_subset": 0.6, "gsm8k": 0.45}
    specs = [calib.Spec(*r.metric.split("/", 1), "higher", rates[r.metric.split("/")[0]],
                        SHIPPED_SIZES[r.metric.split("/")[0]]) for r in policy.rules]
    equal = calib.simulate(policy, specs, trials=40, seed=3, redraw=0.25)
    assert equal["overall"]["pass"] / 40 >= 0.95, equal
    drop = calib.simulate(policy, specs, trials=40, seed=4, redraw=0.25, regressions={"mmlu_subset/acc": 0.06})
    assert drop["overall"]["fail"] / 40 >= 0.85, drop  # exact: 0.959 (plan)
    assert drop["per_rule"]["mmlu_subset/acc max_regression 0.03"]["pass"] == 0


def test_suites_lists_the_group_and_sizes_without_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    code, out, err = run_cli(["suites", "--json"], capsys)
    assert code == 0, out + err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["general_capabilities"]["kind"] == "group" and rows["general_capabilities"]["suites"] == MEMBERS
    assert {n: rows[n]["samples"] for n in MEMBERS} == SHIPPED_SIZES
    code, out, err = run_cli(["run", "--model", "x", "--suites", "no_such_suite", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "groups: general_capabilities" in err
