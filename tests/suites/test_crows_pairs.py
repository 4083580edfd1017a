"""crows_pairs: exact stereotype shares on scripted log-likelihoods, the real CSV, a tiny model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import LoglikelihoodRequest
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite

PAIRS = [
    # id, more, less, direction, bias type, ll_more, ll_less
    ("a", "M1", "L1", "stereo", "gender", -1.0, -2.0),      # preferred
    ("b", "M2", "L2", "antistereo", "gender", -3.0, -2.0),  # not
    ("c", "M3", "L3", "stereo", "race-color", -1.0, -1.0),  # tie: not preferred, still counted
    ("d", "M4", "L4", "stereo", "race-color", -0.5, -4.0),  # preferred
    ("e", "M5", "L5", "stereo", "race-color", -2.0, -1.5),  # not
]


def write_suite(tmp_path: Path, rows: list[list[str]], header: list[str] | None = None, **extra: str) -> Path:
    data = tmp_path / "pairs.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header or ["id", "sent_more", "sent_less", "stereo_antistereo", "bias_type"])
        w.writerows(rows)
    yml = tmp_path / "cp.yaml"
    lines = ["name: cp", "kind: crows_pairs", "data: pairs.csv"] + [f"{k}: {v}" for k, v in extra.items()]
    yml.write_text("\n".join(lines) + "\n")
    return yml


def test_exact_shares_on_scripted_loglikelihoods(tmp_path: Path) -> None:
    yml = write_suite(tmp_path, [list(p[:5]) for p in PAIRS])
    lls = {}
    for p in PAIRS:
        lls[p[1]], lls[p[2]] = p[5], p[6]
    backend = MockBackend.scripted(loglikelihoods=lls)
    run = evaluate(backend.spec, [str(yml)], backend=backend, cache_path=None)
    res = run.suite("cp")
    assert res is not None and res.counts == {"scored": 5, "errored": 0, "skipped": 0}
    rate = res.metric("stereotype_rate")
    assert rate.value == pytest.approx(2 / 5) and rate.kind == "binary" and rate.direction == "lower"
    assert rate.per_sample == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 0.0}
    assert res.metric("stereotype_rate/gender").value == pytest.approx(0.5)
    assert res.metric("stereotype_rate/race-color").value == pytest.approx(1 / 3)
    assert res.metric("bias_distance").value == pytest.approx(0.1)
    assert res.metric("ll_diff").value == pytest.approx((1.0 - 1.0 + 0.0 + 3.5 - 0.5) / 5)
    # whole sentences scored after BOS: empty context, continuation = the sentence
    first = res.samples[0]
    assert first.requests == [LoglikelihoodRequest(context="", continuation="M1"),
                              LoglikelihoodRequest(context="", continuation="L1")]


def test_bad_rows_name_the_field(tmp_path: Path) -> None:
    yml = write_suite(tmp_path, [["x", "Same.", "Same.", "stereo", "age"]])
    with pytest.raises(UserError, match=r"data row 1: field 'sent_less'.*identical"):
        load_suite(str(yml))
    yml = write_suite(tmp_path, [["x", "A.", "B.", "pro", "age"]])
    with pytest.raises(UserError, match=r"field 'direction' \(column 'stereo_antistereo'\).*'stereo' or 'antistereo'"):
        load_suite(str(yml))


def test_unnamed_first_column_is_the_id(tmp_path: Path) -> None:
    yml = write_suite(tmp_path, [["7", "A.", "B.", "stereo", "age"]],
                      header=["", "sent_more", "sent_less", "stereo_antistereo", "bias_type"])
    assert [s.id for s in load_suite(str(yml)).samples()] == ["7"]


def test_builtin_suite_loads() -> None:
    suite = load_suite("crows_pairs_mini")
    samples = suite.samples()
    assert len(samples) >= 60
    assert len({s.metadata["bias_type"] for s in samples}) >= 8
    assert suite.config.content_warning


def test_real_crows_pairs_csv_parses(shared_datasets: Path, tmp_path: Path) -> None:
    path = shared_datasets / "crows_pairs" / "crows_pairs_anonymized.csv"
    yml = tmp_path / "real.yaml"
    yml.write_text(f"name: real\nkind: crows_pairs\ndata: {path}\n")
    samples = load_suite(str(yml)).samples()
    assert len(samples) == 1508
    assert samples[0].id == "0" and samples[-1].id == "1507"
    assert {s.metadata["direction"] for s in samples} == {"stereo", "antistereo"}
    assert len({s.metadata["bias_type"] for s in samples}) == 9


@pytest.mark.slow
def test_end_to_end_on_tiny_model(tiny_model_dir: Path) -> None:
    pytest.importorskip("tunegate.backends.hf")
    run = evaluate(ModelSpec(model=str(tiny_model_dir)), ["crows_pairs_mini"], cache_path=None)
    res = run.suite("crows_pairs_mini")
    assert res.counts["scored"] == len(res.samples) >= 60
    rate = res.metric("stereotype_rate")
    assert 0.0 <= rate.value <= 1.0 and rate.n == len(res.samples)
    s = res.samples[0]
    ll_more, ll_less = (r.loglikelihood for r in s.responses)
    assert s.score("stereotype_preferred") == float(ll_more > ll_less)
