"""The `lm_eval` kind: lm-eval tasks through tunegate's backends, scored by the task's own metrics.

The parity test runs lm-evaluation-harness itself (its HF model, `simple_evaluate`)
and the bridge (tunegate's HF backend) on the same tiny model and the same
local task YAMLs (tests/data/lm_eval: a multiple-choice task, with and without
few-shot examples, a generate-until task and a rolling log-likelihood task),
and requires the same per-document metric values and the same aggregates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tunegate.core.config import SuiteConfig
from tunegate.core.errors import MissingDependencyError, UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.results import RunResult, SuiteResult

HERE = Path(__file__).resolve().parents[1] / "data" / "lm_eval"
TASKS = {"mc": "tg_parity_mc", "mc_fewshot": "tg_parity_mc", "gen": "tg_parity_gen", "rolling": "tg_parity_rolling"}
FEWSHOT = {"mc_fewshot": (2, 10)}

try:
    import lm_eval  # noqa: F401

    HAVE_LM_EVAL = True
except ImportError:
    HAVE_LM_EVAL = False
needs_lm_eval = pytest.mark.skipif(not HAVE_LM_EVAL, reason="lm-eval is not installed: pip install 'tunegate[lm_eval]'")


def lm_eval_own_run(model_dir: Path, key: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], float]:
    """lm-eval's own `simple_evaluate` with its HF model on the task: (results, seconds)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(HERE)  # the task YAMLs name their data files relative to their folder
    shots, limit = FEWSHOT.get(key, (None, None))
    t0 = time.perf_counter()
    lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=8, device="cpu")
    res = lm_eval.simple_evaluate(model=lm, tasks=[TASKS[key]], num_fewshot=shots, limit=limit,
                                  task_manager=TaskManager(include_path=str(HERE), include_defaults=False),
                                  log_samples=True, bootstrap_iters=0)
    return res, time.perf_counter() - t0


def bridge_run(model_dir: Path, key: str) -> tuple[SuiteResult, float]:
    from tunegate.run.evaluate import evaluate

    t0 = time.perf_counter()
    result = evaluate(ModelSpec(model=str(model_dir), dtype="float32"), [str(HERE / f"suite_{key}.yaml")],
                      cache_path=None)
    return result.suites[0], time.perf_counter() - t0


@needs_lm_eval
@pytest.mark.parametrize("key", list(TASKS))
def test_bridge_matches_lm_eval_per_document(key: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sr, bridge_s = bridge_run(tiny_model_dir, key)
    own, own_s = lm_eval_own_run(tiny_model_dir, key, monkeypatch)
    task = TASKS[key]
    samples = own["samples"][task]
    agg = own["results"][task]
    assert sr.counts == {"scored": len(samples), "errored": 0, "skipped": 0}
    by_id = {r.id: r for r in sr.samples}
    compared = 0
    for s in samples:
        r = by_id[str(s["doc_id"])]
        for metric in s["metrics"]:
            v = s[metric]
            if isinstance(v, (int, float)):  # per-document decisions and values: exactly lm-eval's
                assert r.score(metric) == pytest.approx(float(v), abs=1e-6), (key, s["doc_id"], metric)
                compared += 1
        if task == "tg_parity_gen":  # the same greedy text
            assert [x.text for x in r.responses] == [f for f in s["filtered_resps"]], s["doc_id"]
    assert compared or task == "tg_parity_rolling"
    for full, value in agg.items():
        metric, _, flt = full.partition(",")
        if flt != "none" or not isinstance(value, (int, float)) or metric == "alias":
            continue
        mine = sr.metric(metric)
        assert mine is not None and mine.value is not None, metric
        tol = 1e-9 if mine.kind == "binary" else 1e-4 * max(1.0, abs(value))
        assert mine.value == pytest.approx(value, abs=tol), (key, metric, mine.value, value)
    print(f"\n{key}: bridge {bridge_s:.2f}s, lm-eval {own_s:.2f}s, ratio {own_s / bridge_s:.2f}x")


# ---- naming, compare and gate ---------------------------------------------------
@needs_lm_eval
def test_lm_eval_prefix_runs_through_compare_and_gate(tiny_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`--suites lm_eval:TASK` (tasks found in TUNEGATE_LM_EVAL_TASKS folders, then lm-eval's own) to a verdict."""
    from tests.cli import run_cli
    from tunegate.suites.lm_eval import LM_EVAL_TASKS_ENV

    monkeypatch.setenv(LM_EVAL_TASKS_ENV, str(HERE))
    monkeypatch.chdir(HERE)  # lm-eval resolves a named task's relative data files from the working directory
    for label in ("base", "cand"):
        code, out, err = run_cli(["run", "--model", str(tiny_model_dir), "--label", label, "--suites",
                                  "lm_eval:tg_parity_mc", "--out", str(tmp_path / label)], capsys)
        assert code == 0, err
    base = RunResult.load(tmp_path / "base" / "results.json")
    (sr,) = base.suites
    assert sr.name == "lm_eval_tg_parity_mc" and sr.data_source and sr.data_source["lm_eval_task"] == "tg_parity_mc"
    acc = sr.metric("acc")
    assert acc is not None and acc.kind == "binary" and len(acc.per_sample) == 16
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - metric: lm_eval_tg_parity_mc/acc\n    max_regression: 0.5\n")
    code, out, err = run_cli(["gate", str(tmp_path / "base"), str(tmp_path / "cand"), "--policy", str(policy),
                              "--out", str(tmp_path / "report")], capsys)
    assert code == 0, out + err  # the same model twice: no regression beyond 0.5
    assert (tmp_path / "report" / "report.html").is_file()


def test_lm_eval_prefix_needs_a_task_name() -> None:
    from tunegate.run.suite_loader import load_suite

    with pytest.raises(UserError, match="expected lm_eval:TASK"):
        load_suite("lm_eval:")


# ---- options and the optional package ---------------------------------------------
def _kind(options: dict[str, Any], **extra: Any) -> Any:
    from tunegate.suites.lm_eval import LMEval

    return LMEval(SuiteConfig(name="t", kind="lm_eval", options=options, **extra), HERE)


def test_options_need_exactly_one_task_and_no_data() -> None:
    with pytest.raises(UserError, match="exactly one of 'task'"):
        _kind({"task": "a", "task_yaml": "b.yaml"})
    with pytest.raises(UserError, match="reads its task's own data"):
        _kind({"task": "a"}, data={"path": "mc.jsonl"})
    with pytest.raises(UserError, match="num_fewshot"):
        _kind({"task": "a", "num_fewshot": -1})


def test_missing_lm_eval_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError, as when it is not installed
    suite = _kind({"task_yaml": "mc_task.yaml"})  # options validate without lm-eval
    with pytest.raises(MissingDependencyError, match=r"pip install 'tunegate\[lm_eval\]'"):
        suite.samples()


@needs_lm_eval
def test_task_yaml_data_files_stay_inside_allowed_folders(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text((HERE / "mc_task.yaml").read_text().replace("test: mc.jsonl",
                                                                                   "test: ../../etc/passwd"))
    from tunegate.suites.lm_eval import LMEval

    suite = LMEval(SuiteConfig(name="t", kind="lm_eval", options={"task_yaml": "t.yaml"}), tmp_path)
    with pytest.raises(UserError, match="outside the suite's folder"):
        suite.samples()


# ---- an lm-eval group: two tasks pooled into one suite ------------------------------
GROUP = "tg_parity_group"
GROUP_TASKS = ("tg_parity_mc", "tg_parity_mc2")


def lm_eval_group_run(model_dir: Path, limit: int | None) -> dict[str, Any]:
    """lm-eval's own `simple_evaluate` on the group (the working directory must be HERE)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=8, device="cpu")
    return lm_eval.simple_evaluate(model=lm, tasks=[GROUP], limit=limit,
                                   task_manager=TaskManager(include_path=str(HERE), include_defaults=False),
                                   log_samples=True, bootstrap_iters=0)


def _group_parity(model_dir: Path, suite_key: str, limit: int | None, monkeypatch: pytest.MonkeyPatch) -> SuiteResult:
    """The bridge and lm-eval on the group: the same documents, per-document values and group aggregates."""
    from tunegate.suites.lm_eval import LM_EVAL_TASKS_ENV

    monkeypatch.setenv(LM_EVAL_TASKS_ENV, str(HERE))
    monkeypatch.chdir(HERE)  # lm-eval resolves a named task's relative data files from the working directory
    sr, _ = bridge_run(model_dir, suite_key)
    own = lm_eval_group_run(model_dir, limit)
    assert set(own["samples"]) == set(GROUP_TASKS)
    expected_ids = {f"{task}/{s['doc_id']}" for task in GROUP_TASKS for s in own["samples"][task]}
    by_id = {r.id: r for r in sr.samples}
    assert set(by_id) == expected_ids
    assert sr.counts == {"scored": len(expected_ids), "errored": 0, "skipped": 0}
    compared = 0
    for task in GROUP_TASKS:
        for s in own["samples"][task]:
            r = by_id[f"{task}/{s['doc_id']}"]
            assert r.sample.metadata["task"] == task and r.sample.metadata["doc_id"] == s["doc_id"]
            for metric in ("acc", "acc_norm"):
                assert r.score(metric) == float(s[metric]), (task, s["doc_id"], metric)  # exactly lm-eval's
                compared += 1
    assert compared == 2 * len(expected_ids)
    group = own["groups"][GROUP] if GROUP in own.get("groups", {}) else own["results"][GROUP]
    for metric in ("acc", "acc_norm"):
        mine = sr.metric(metric)
        assert mine is not None and mine.value is not None and mine.kind == "binary", metric
        assert len(mine.per_sample) == len(expected_ids)
        assert mine.value == pytest.approx(group[f"{metric},none"], abs=1e-9), (metric, mine.value, group)
        assert group["sample_count"][f"{metric},none"] == len(expected_ids)
        print(f"\n{suite_key} {metric}: bridge {mine.value!r}, lm-eval group {group[f'{metric},none']!r}, "
              f"n={len(expected_ids)}")
    assert not [m.name for m in sr.metrics if "/" in m.name]  # means pool; no per-task corpus metrics for acc
    assert sr.data_source is not None
    assert sr.data_source["lm_eval_subtasks"] == 2 and sr.data_source["lm_eval_task"] == GROUP
    return sr


@needs_lm_eval
def test_group_bridge_matches_lm_eval(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group suite pools its tasks' documents; acc/acc_norm equal lm-eval's size-weighted group score."""
    sr = _group_parity(tiny_model_dir, "group", None, monkeypatch)
    assert sum(r.id.startswith("tg_parity_mc/") for r in sr.samples) == 16
    assert sum(r.id.startswith("tg_parity_mc2/") for r in sr.samples) == 11
    assert "limit" not in (sr.data_source or {})


@needs_lm_eval
def test_group_limit_applies_per_task(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`limit: 3` on a two-task group asks the first 3 documents of each task (6), as lm-eval's `limit` does."""
    sr = _group_parity(tiny_model_dir, "group_limit", 3, monkeypatch)
    assert sorted(r.id for r in sr.samples) == sorted(f"{t}/{i}" for t in GROUP_TASKS for i in range(3))
    assert (sr.data_source or {}).get("limit") == 3
