"""Data loading: whole-file validation, label masking (exact), templates, length drops, packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.core.errors import UserError
from tunegate.finetune.data import IGNORE_INDEX, Example, TrainRow, build_examples, collate, load_jsonl, pack, render_plain, tokenize_row


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


def test_prompt_tokens_are_masked_exactly(tok) -> None:
    row = TrainRow(line=1, prompt="Q: color of sky? A:", completion=" blue")
    ex = tokenize_row(row, tok)
    p, c, eos = _ids(tok, "Q: color of sky? A:"), _ids(tok, " blue"), tok.eos_token_id
    assert len(p) >= 5 and len(c) >= 1
    assert ex.input_ids == p + c + [eos]
    assert ex.labels == [IGNORE_INDEX] * len(p) + c + [eos]
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]) == " blue<|endoftext|>"


def test_bos_added_by_the_tokenizer_is_kept_and_masked(tiny_model_dir: Path) -> None:
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)])
    ex = tokenize_row(TrainRow(line=1, prompt="Hi", completion=" there"), tok)
    assert ex.input_ids[0] == bos and ex.labels[0] == IGNORE_INDEX
    assert ex.input_ids[1:] == _ids(tok, "Hi") + _ids(tok, " there") + [tok.eos_token_id]


def test_plain_chat_template_trains_only_assistant_turns(tok) -> None:
    msgs = (("system", "Be brief."), ("user", "Reset?"), ("assistant", "Open settings."),
            ("user", "Then?"), ("assistant", "Choose reset."))
    ex = tokenize_row(TrainRow(line=1, messages=msgs), tok, chat_mode="auto")  # tiny tokenizer has no template
    eos = tok.eos_token
    trained_spans, cur = [], []
    for tok_id, label in zip(ex.input_ids, ex.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == tok_id
            cur.append(label)
        elif cur:
            trained_spans.append(tok.decode(cur))
            cur = []
    if cur:
        trained_spans.append(tok.decode(cur))
    assert trained_spans == [f" Open settings.{eos}", f" Choose reset.{eos}"]
    rendered = render_plain(list(msgs), eos_token=eos)
    assert rendered == (f"System: Be brief.\n\nUser: Reset?\n\nAssistant: Open settings.{eos}\n\n"
                        f"User: Then?\n\nAssistant: Choose reset.{eos}\n\n")
    assert tok.decode(ex.input_ids) == rendered[: -len("\n\n")]  # trailing context is trimmed


def test_tokenizer_chat_template_is_used_when_present(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    msgs = (("user", "Hello"), ("assistant", "Hi there"))
    ex = tokenize_row(TrainRow(line=1, messages=msgs), tok, chat_mode="auto")
    assert tok.decode(ex.input_ids) == "<user>Hello</s><assistant>Hi there</s>"
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]) == "Hi there</s>"
    plain = tokenize_row(TrainRow(line=1, messages=msgs), tok, chat_mode="plain")
    assert tok.decode(plain.input_ids).startswith("User: Hello")


def test_every_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"prompt": "ok", "completion": " fine"}),               # 1 good
        "{not json",                                                        # 2
        json.dumps({"prompt": "no completion"}),                            # 3
        "",                                                                 # 4 blank: skipped
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),      # 5 no assistant
        json.dumps({"messages": [{"role": "bot", "content": "hi"}]}),       # 6 bad role
        json.dumps([1, 2]),                                                 # 7 not an object
        json.dumps({"prompt": "a", "completion": "b", "messages": []}),     # 8 both formats
        json.dumps({"prompt": "a", "completion": ""}),                      # 9 empty completion
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),  # 10 good
    ]) + "\n")
    with pytest.raises(UserError) as err:
        load_jsonl(path)
    msg = str(err.value)
    assert err.value.exit_code == 2
    assert msg.startswith(f"{path}: 7 bad row(s) in training data")
    for line, reason in [(2, "not valid JSON"), (3, "field 'completion' is missing"), (5, "no assistant turn"),
                         (6, "messages[0].role' is 'bot'"), (7, "expected a JSON object, got list"),
                         (8, "not both"), (9, "field 'completion' is missing or not a non-empty string")]:
        assert f"{path}: line {line}: " in msg and reason in msg, (line, reason)
    assert "line 1:" not in msg and "line 4:" not in msg and "line 10:" not in msg


def test_valid_file_hash_and_counts(train_file: Path) -> None:
    import hashlib

    data = load_jsonl(train_file)
    assert data.sha256 == hashlib.sha256(train_file.read_bytes()).hexdigest()
    assert [r.line for r in data.rows] == [1, 2, 3, 4] and data.format_counts == {"prompt_completion": 4}


def test_rows_longer_than_max_length_are_dropped_and_counted(tmp_path: Path, tok, jsonl) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"prompt": "Q:", "completion": " a"},
                                              {"prompt": "Q: " + "word " * 30, "completion": " b"}])
    out = build_examples(load_jsonl(path), tok, max_length=8)
    assert out.rows == 2 and out.dropped_for_length == [2] and len(out.examples) == 1
    with pytest.raises(UserError, match="every row is longer than max_length=2"):
        build_examples(load_jsonl(path), tok, max_length=2)


def test_packing_concatenates_and_keeps_labels() -> None:
    exs = [Example([1, 2, 3], [-100, 2, 3], (1,)), Example([4, 5], [-100, 5], (2,)), Example([6, 7, 8], [-100, 7, 8], (3,))]
    blocks = pack(exs, max_length=5)
    assert [b.input_ids for b in blocks] == [[1, 2, 3, 4, 5], [6, 7, 8]]
    assert [b.labels for b in blocks] == [[-100, 2, 3, -100, 5], [-100, 7, 8]]
    assert blocks[0].lines == (1, 2)


def test_collate_pads_right_with_ignored_labels() -> None:
    batch = collate([Example([1, 2, 3], [-100, 2, 3]), Example([4], [4]), None], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0], [0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100], [-100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 1]]


def test_cli_bad_data_exits_2_before_loading_a_model(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    from tunegate.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": "b", "completion": " c"}\n[]\n')
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["finetune", str(Path(__file__).resolve().parents[2] / "fine_tune" / "sft-lora.yaml"),
              "--base", str(tiny_model_dir), "--data", str(bad), "--out", str(out), "epochs=1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "2 bad row(s)" in err and "line 1: field 'completion'" in err and "line 3: expected a JSON object" in err
    assert not out.exists()


@pytest.mark.parametrize("name, rows, fmt", [("support_eval.jsonl", 12, "prompt_completion"),
                                             ("example_chat.jsonl", 6, "chat")])
def test_shipped_example_data_is_valid(name: str, rows: int, fmt: str) -> None:
    data = load_jsonl(Path(__file__).resolve().parents[2] / "fine_tune" / "data" / name)
    assert len(data.rows) == rows and data.format_counts == {fmt: rows}
