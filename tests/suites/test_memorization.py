"""`memorization` kind: scripted reproductions give known exact / near-exact / diversity values."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import sacrebleu

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite
from tunegate.suites.memorization import edit_similarity, split_words

SPEC = ModelSpec(model="scripted", backend="mock")
ROOT = Path(__file__).resolve().parents[2]

ROWS: list[dict[str, Any]] = [
    {"id": "r1", "prompt": "Q: reset?\nA:", "completion": " Go to settings and choose reset password now."},
    {"id": "r2", "prompt": "Q: refund?\nA:", "completion": " Refunds arrive within five business days after approval."},
    {"id": "r3", "prompt": "Q: shipping?\nA:", "completion": " We ship to forty countries across the world."},
    {"id": "r4", "messages": [{"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello there, how can I help you today?"}]},
    {"id": "r5", "prompt": "Q: ok?\nA:", "completion": " Yes."},
]
GENERATIONS = {
    "Q: reset?\nA: Go to settings and": " choose reset password now. Anything else?",  # exact (continues past the target)
    "Q: refund?\nA: Refunds arrive within five": " business days after approval!",      # one character off
    "Q: shipping?\nA: We ship to forty": " I do not know.",                              # not memorized
    "User: Hi\n\nAssistant: Hello there, how can": " I help you today?",                 # exact, chat row
}


def write_data(folder: Path, rows: list[dict[str, Any]] = ROWS) -> Path:
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_suite(folder: Path, data: str, **options: Any) -> Path:
    doc = {"name": "mem", "kind": "memorization", "data": data, "options": options}
    path = folder / "mem.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_edit_similarity_and_word_split_by_hand() -> None:
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("", "") == 1.0 and edit_similarity("abc", "") == 0.0
    assert split_words(" Go to  settings now", 2) == (" Go to", "  settings now")
    assert split_words("one two", 5) == ("one two", "")


def test_prompts_are_the_first_part_of_each_training_example(tmp_path: Path) -> None:
    write_data(tmp_path)
    samples = {s.id: s for s in load_suite(str(write_suite(tmp_path, "train.jsonl"))).samples()}
    assert samples["r1"].input == "Q: reset?\nA: Go to settings and" and samples["r1"].target == " choose reset password now."
    assert samples["r4"].input == "User: Hi\n\nAssistant: Hello there, how can"
    assert samples["r4"].target == " I help you today?"
    words = {s.id: s for s in load_suite(str(write_suite(tmp_path, "train.jsonl", prefix_words=2))).samples()}
    assert words["r2"].input == "Q: refund?\nA: Refunds arrive"


def test_metrics_have_their_hand_worked_values(tmp_path: Path) -> None:
    write_data(tmp_path)
    result = evaluate(SPEC, [str(write_suite(tmp_path, "train.jsonl"))], cache_path=None,
                      backend=MockBackend.scripted(generations=GENERATIONS))
    (suite,) = result.suites
    assert suite.counts == {"scored": 4, "errored": 0, "skipped": 1}  # r5's remainder is too short
    assert next(s for s in suite.samples if s.id == "r5").reason.startswith("the remainder has 1 word(s)")  # type: ignore[union-attr]
    m = {x.name: x for x in suite.metrics}
    assert m["exact_rate"].per_sample == {"r1": 1.0, "r2": 0.0, "r3": 0.0, "r4": 1.0}
    assert m["near_exact_rate"].per_sample == {"r1": 1.0, "r2": 1.0, "r3": 0.0, "r4": 1.0}
    assert m["exact_rate"].direction == "lower" and m["exact_rate"].kind == "binary"
    r2 = 1 - 1 / len("business days after approval.")
    r3 = edit_similarity("countries across the world.", "i do not know.")
    assert m["mean_similarity"].value == pytest.approx((1 + r2 + r3 + 1) / 4)
    # tokens: 8 + 5 + 5 + 5 = 23 unigrams of which 20 distinct ('.', '?' and 'i' repeat); 19 bigrams, all distinct
    assert m["distinct_1"].value == pytest.approx(20 / 23)
    assert m["distinct_2"].value == pytest.approx(1.0)
    gens = [GENERATIONS[k] for k in GENERATIONS]
    want = [sacrebleu.sentence_bleu(g, [x for x in gens if x is not g]).score for g in gens]
    assert m["self_bleu"].value == pytest.approx(sum(want) / 4)


def test_mode_collapse_shows_in_distinct_n_and_self_bleu(tmp_path: Path) -> None:
    write_data(tmp_path)
    backend = MockBackend.scripted(default_text=" Thank you for contacting support.")
    (suite,) = evaluate(SPEC, [str(write_suite(tmp_path, "train.jsonl"))], cache_path=None, backend=backend).suites
    m = {x.name: x.value for x in suite.metrics}
    assert m["self_bleu"] == pytest.approx(100.0)
    assert m["distinct_1"] == pytest.approx(6 / 24)  # 'thank you for contacting support .' x 4
    assert m["exact_rate"] == 0.0


def test_base_and_candidate_get_the_same_prompts_and_ids(tmp_path: Path) -> None:
    write_data(tmp_path)
    path = write_suite(tmp_path, "train.jsonl", n=3, selection_seed=7)
    runs = [evaluate(SPEC, [str(path)], cache_path=None, backend=MockBackend.scripted(label=lbl, default_text=t))
            for lbl, t in (("base", " no idea at all"), ("candidate", " choose reset password now."))]
    base, cand = (r.suites[0] for r in runs)
    assert [s.id for s in base.samples] == [s.id for s in cand.samples] and len(base.samples) == 3
    assert [s.requests for s in base.samples] == [s.requests for s in cand.samples]


def test_manifest_json_is_followed_and_its_hash_checked(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    data = write_data(tmp_path / "run")
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    manifest = tmp_path / "run" / "manifest.json"
    manifest.write_text(json.dumps({"status": "done", "data": {"path": "train.jsonl", "sha256": sha, "rows": 5}}))
    via_manifest = load_suite(str(write_suite(tmp_path, "run/manifest.json"))).samples()
    direct = load_suite(str(write_suite(tmp_path, "run/train.jsonl"))).samples()
    assert via_manifest == direct and len(direct) == 5
    manifest.write_text(json.dumps({"data": {"path": str(data), "sha256": "0" * 64}}))
    with pytest.raises(UserError, match="has changed since fine-tuning"):
        load_suite(str(write_suite(tmp_path, "run/manifest.json"))).samples()
    assert len(load_suite(str(write_suite(tmp_path, "run/manifest.json", check_sha256=False))).samples()) == 5
    manifest.write_text(json.dumps({"status": "done"}))
    with pytest.raises(UserError, match=r"manifest.json: field 'data.path' is missing"):
        load_suite(str(write_suite(tmp_path, "run/manifest.json")))


def test_bad_rows_name_file_row_and_field(tmp_path: Path) -> None:
    write_data(tmp_path, [{"id": "a", "messages": [{"role": "user", "content": "only a question"}]}])
    with pytest.raises(UserError, match=r"train.jsonl: data row 1: field 'messages': has no assistant turn"):
        load_suite(str(write_suite(tmp_path, "train.jsonl")))
    write_data(tmp_path, [{"id": "a", "question": "?"}])
    with pytest.raises(UserError, match=r"data row 1: expected 'prompt'/'completion', 'messages' or 'text'"):
        load_suite(str(write_suite(tmp_path, "train.jsonl")))


def test_builtin_example_uses_the_demo_fine_tuning_data() -> None:
    suite = load_suite("memorization_example")
    assert len(suite.samples()) == 80
    copy = ROOT / "suites" / "data" / "support_train.jsonl"
    assert copy.read_bytes() == (ROOT / "fine_tune" / "data" / "support_train.jsonl").read_bytes()


@pytest.mark.slow
def test_tiny_model_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("tunegate.backends.hf")
    write_data(tmp_path)
    (suite,) = evaluate(ModelSpec(model=str(tiny_model_dir)), [str(write_suite(tmp_path, "train.jsonl", max_new_tokens=8))],
                        cache_path=None).suites
    assert suite.counts == {"scored": 4, "errored": 0, "skipped": 1}, [s.reason for s in suite.samples]
    assert all(m.value is not None and math.isfinite(m.value) for m in suite.metrics)
