"""DPO (`objective: dpo`): SFT -> DPO through the documented CLI command, a complete manifest, the
chosen-vs-rejected log-likelihood margin growing on the training pairs, bad rows refused with exit 2,
exact resume, and LoRA DPO checkpoints served by the hf backend as audit candidates.

The tiny Llama learns four pairs in 20 optimizer steps at a learning rate far above any real recipe's
(0.01); the LoRA adapter also covers the untied `lm_head` for the reason given in test_train.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tunegate.core.errors import UserError
from tunegate.finetune import CHECKPOINT_RECORD, TrainingInterrupted, finetune
from tunegate.finetune.recipe import load_recipe, resolve_auto, resolved_dict

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [{"prompt": "Q: color of sky? A:", "chosen": " blue", "rejected": " green"},
         {"prompt": "Q: color of grass? A:", "chosen": " green", "rejected": " blue"},
         {"prompt": "Q: two plus two? A:", "chosen": " four", "rejected": " five"},
         {"prompt": "Q: capital of France? A:", "chosen": " Paris", "rejected": " Rome"}]
DPO_LORA = ["epochs=10", "batch_size=2", "gradient_accumulation=1", "learning_rate=0.01", "warmup_ratio=0",
            "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head]",
            "save_every_epoch=false", "save_every_steps=5"]
HISTORY_KEYS = {"step", "epoch", "loss", "lr", "reward_margin", "reward_accuracy", "reward_chosen", "reward_rejected",
                "pairs"}

pytestmark = pytest.mark.slow


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("prefs") / "prefs.jsonl", PAIRS)


@pytest.fixture(scope="module")
def sft_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    """A full SFT checkpoint (the documented start of SFT -> DPO), a few steps on the pairs' chosen answers."""
    tmp = tmp_path_factory.mktemp("sft")
    rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS]
    res = finetune(ROOT / "fine_tune" / "sft-full.yaml", base=str(tiny_llama_dir), data=_write(tmp / "sft.jsonl", rows),
                   out=tmp / "sft", overrides=["max_steps=4", "batch_size=2", "learning_rate=0.001"], progress=False)
    return res.final_dir


@pytest.fixture(scope="module")
def dpo_cli(tmp_path_factory: pytest.TempPathFactory, sft_ckpt: Path, prefs: Path) -> Path:
    """`tunegate finetune fine_tune/dpo-lora.yaml --base SFT_CKPT --data prefs.jsonl --out runs/dpo` (+ overrides)."""
    from tunegate.cli import main

    out = tmp_path_factory.mktemp("runs") / "dpo"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # the recipe path as the docs write it
        main(["finetune", "fine_tune/dpo-lora.yaml", "--base", str(sft_ckpt), "--data", str(prefs), "--eval", str(prefs),
              "--out", str(out), "--no-progress", *DPO_LORA])
    return out


def _margins(spec: dict) -> list[float]:
    """log P(chosen | prompt) - log P(rejected | prompt) per training pair, as the harness measures it."""
    from tunegate.backends.hf import HFBackend
    from tunegate.core.model_spec import ModelSpec
    from tunegate.core.request import LoglikelihoodRequest

    backend = HFBackend(ModelSpec(device="cpu", **spec))
    try:
        res = backend.loglikelihood([LoglikelihoodRequest(context=p["prompt"], continuation=p[side])
                                     for p in PAIRS for side in ("chosen", "rejected")])
    finally:
        backend.close()
    ll = [r.loglikelihood for r in res]
    assert all(v is not None for v in ll)
    return [float(ll[2 * i]) - float(ll[2 * i + 1]) for i in range(len(PAIRS))]  # type: ignore[arg-type]


def test_cli_dpo_manifest_is_complete(dpo_cli: Path, sft_ckpt: Path, prefs: Path) -> None:
    from tunegate.core.fingerprint import fingerprint_folder

    m = json.loads((dpo_cli / "manifest.json").read_text())
    assert m["status"] == "complete" and m["objective"] == "dpo" and m["method"] == "lora"
    assert m["recipe"]["objective"] == "dpo" and m["recipe"]["dpo"]["beta"] == 0.1
    fp = fingerprint_folder(sft_ckpt)
    assert m["base"]["fingerprint"] == fp and m["dpo"]["reference"] == {
        "kind": "base", "model": str(sft_ckpt.resolve()), "path": str(sft_ckpt.resolve()), "fingerprint": fp}
    assert m["dpo"]["beta"] == 0.1 and m["dpo"]["loss_type"] == "sigmoid" and m["dpo"]["pairs"] == {"train": 4, "eval": 4}
    assert m["data"]["sha256"] == hashlib.sha256(prefs.read_bytes()).hexdigest()
    assert m["data"]["formats"] == {"preference": 4} and m["data"]["rows_used"] == 4 and m["data"]["examples"] == 4
    assert m["steps"] == {"completed": 20, "total": 20, "per_epoch": 2, "epochs": 10}
    hist = m["train_loss_history"]
    assert [h["step"] for h in hist] == list(range(1, 21)) and all(set(h) == HISTORY_KEYS for h in hist)
    first, last = hist[0], hist[-1]
    # step 1 scores with the reference's own weights: loss log 2, margin 0 (up to float noise)
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3) and abs(first["reward_margin"]) < 1e-4
    assert last["loss"] < 0.4 and last["reward_margin"] > 1.0 and last["reward_accuracy"] == 1.0
    assert last["reward_margin"] == pytest.approx(last["reward_chosen"] - last["reward_rejected"])
    ev = m["eval_loss_history"]
    assert [h["step"] for h in ev] == [0, 5, 10, 15, 20] and ev[-1]["reward_accuracy"] == 1.0
    assert ev[0]["loss"] == pytest.approx(0.6931, abs=1e-3) and ev[-1]["loss"] < ev[0]["loss"] - 0.3
    assert [c["step"] for c in m["checkpoints"]] == [5, 10, 15] and m["final"]["path"] == "final"
    rec = json.loads((dpo_cli / "checkpoint-5" / CHECKPOINT_RECORD).read_text())
    assert (rec["objective"], rec["dpo_beta"], rec["reference_fingerprint"], rec["data_sha256"]) == (
        "dpo", 0.1, fp, m["data"]["sha256"])
    assert not (dpo_cli / "state").exists()


def test_margin_on_the_training_pairs_grows(dpo_cli: Path, sft_ckpt: Path) -> None:
    """Measured with the SFT model before and the DPO adapter after, through the hf backend (as an audit would)."""
    before = _margins({"model": str(sft_ckpt)})
    after = _margins({"model": str(sft_ckpt), "adapter": str(dpo_cli / "final")})
    print(f"margins before {before} after {after}")
    assert all(a - b > 3.0 for a, b in zip(after, before, strict=True))  # measured: +6.9 to +9.8 nats per pair
    assert sum(after) / 4 > sum(before) / 4 + 5.0


def test_lora_dpo_checkpoint_is_an_audit_candidate(dpo_cli: Path, sft_ckpt: Path) -> None:
    from tunegate.backends.hf import HFBackend
    from tunegate.core.model_spec import ModelSpec

    backend = HFBackend(ModelSpec(model=str(sft_ckpt), adapter=str(dpo_cli / "checkpoint-10"), device="cpu"))
    try:
        ident = backend.identity()
    finally:
        backend.close()
    assert ident["finetune"]["objective"] == "dpo" and ident["finetune"]["step"] == 10
    cfg = json.loads((dpo_cli / "final" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(sft_ckpt.resolve())


def test_audit_finetune_block_takes_a_dpo_recipe(tmp_path: Path, sft_ckpt: Path, prefs: Path) -> None:
    from tunegate.core.config import FinetuneBlock
    from tunegate.core.model_spec import ModelSpec
    from tunegate.pipeline.audit import _finetune_candidates

    block = FinetuneBlock(recipe="dpo-full", data=str(prefs), out="dpo-full", label="dpo",
                          overrides={"max_steps": 2, "batch_size": 2, "save_every_epoch": False})
    cands = _finetune_candidates(block, ModelSpec(model=str(sft_ckpt)), tmp_path, lambda _: None)
    assert [c.label for c in cands] == ["dpo@final"] and cands[0].spec.model == str(tmp_path / "dpo-full" / "final")
    m = json.loads((tmp_path / "dpo-full" / "manifest.json").read_text())
    assert m["objective"] == "dpo" and m["method"] == "full" and m["auto"]["epochs"]["value"] == 3  # N = 4 pairs


@pytest.mark.parametrize("row, needle", [
    ({"prompt": "q", "chosen": " a"}, "line 2: field 'rejected' is missing or not a non-empty string"),
    ({"prompt": "q", "chosen": " a", "rejected": " a"}, "line 2: fields 'chosen' and 'rejected' are identical"),
    ({"chosen": " a", "rejected": " b"}, "line 2: field 'prompt' is missing"),
    ({"prompt": [{"role": "bot", "content": "hi"}], "chosen": "a", "rejected": "b"}, "field 'prompt[0].role' is 'bot'"),
    ({"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "user", "content": "x"}], "rejected": "b"},
     "field 'chosen' must be a string or a list of one"),
    ({"prompt": "q", "completion": " a"}, "this is an SFT row"),
])
def test_bad_rows_exit_2_before_a_model_loads(tmp_path: Path, row: dict, needle: str, capsys) -> None:
    from tunegate.cli import main

    data = _write(tmp_path / "prefs.jsonl", [PAIRS[0], row])
    with pytest.raises(SystemExit) as exc:  # --base does not exist: the data is refused first
        main(["finetune", "dpo-lora", "--base", str(tmp_path / "missing"), "--data", str(data), "--out",
              str(tmp_path / "out"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{data}: line 2: " in err and needle in err and "nothing was trained" in err
    assert not (tmp_path / "out").exists()


def test_chat_pairs_train_only_the_final_assistant_turn(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tunegate.finetune.data import IGNORE_INDEX
    from tunegate.finetune.preference_data import load_preferences, tokenize_pair

    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "sky?"}]
    data = load_preferences(_write(tmp_path / "p.jsonl", [
        {"prompt": msgs, "chosen": "blue", "rejected": [{"role": "assistant", "content": "green"}]}]))
    assert data.format_counts == {"preference_chat": 1}
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    pair = tokenize_pair(data.rows[0], tok, "plain")
    for ex, answer in ((pair.chosen, "blue"), (pair.rejected, "green")):
        trained = [t for t in ex.labels if t != IGNORE_INDEX]
        assert tok.decode(trained) == f" {answer}{tok.eos_token}"  # the plain template's trained span, as in SFT
        assert tok.decode(ex.input_ids).startswith("User: hi\n\nAssistant: hello")


def test_resume_replays_the_uninterrupted_run(tmp_path: Path, tiny_model_dir: Path, prefs: Path) -> None:
    over = ["epochs=3", "batch_size=2", "gradient_accumulation=1", "learning_rate=0.001", "save_every_epoch=false", "save_every_steps=2",
            "warmup_ratio=0.2", "dpo.beta=0.5"]

    def run(name: str, **kw):
        return finetune("dpo-full", base=str(tiny_model_dir), data=prefs, eval_data=prefs, out=tmp_path / name,
                        overrides=over, progress=False, **kw)

    straight = run("straight")
    with pytest.raises(TrainingInterrupted, match="step 3"):
        run("cut", stop_after_step=3)
    with pytest.raises(UserError, match="recipe"):
        finetune("dpo-full", base=str(tiny_model_dir), data=prefs, out=tmp_path / "cut", overrides=over + ["dpo.beta=1"],
                 eval_data=prefs, resume=True, progress=False)
    resumed = run("cut", resume=True)
    a, b = straight.manifest["train_loss_history"], resumed.manifest["train_loss_history"]
    assert resumed.manifest["status"] == "complete" and [h["step"] for h in b] == list(range(1, 7))
    for key in ("loss", "reward_margin", "reward_accuracy", "lr"):
        assert [h[key] for h in b] == pytest.approx([h[key] for h in a], abs=1e-5), key
    assert resumed.manifest["eval_loss_history"][-1]["reward_margin"] == pytest.approx(
        straight.manifest["eval_loss_history"][-1]["reward_margin"], abs=1e-5)
    assert len(resumed.manifest["segments"]) == 2


def test_recipe_objective_keys(tmp_path: Path) -> None:
    for name in ("dpo-lora.yaml", "dpo-full.yaml"):
        r = load_recipe(ROOT / "fine_tune" / name)
        assert r.objective == "dpo" and r.dpo.reference == "base" and r.method == name.split("-")[1][:-5]
    sft = load_recipe(ROOT / "fine_tune" / "sft-lora.yaml")
    assert "objective" not in resolved_dict(sft) and "dpo" not in resolved_dict(sft)  # SFT hashes unchanged
    with pytest.raises(UserError, match="only read with objective: dpo"):
        load_recipe(ROOT / "fine_tune" / "sft-lora.yaml", {"dpo.beta": 0.2})
    with pytest.raises(UserError, match="packing is not available"):
        load_recipe(ROOT / "fine_tune" / "dpo-lora.yaml", {"packing": True})
    with pytest.raises(UserError, match="loss_type"):
        load_recipe(ROOT / "fine_tune" / "dpo-lora.yaml", {"dpo.loss_type": "kto"})
    resolved, auto = resolve_auto(load_recipe(ROOT / "fine_tune" / "dpo-lora.yaml"), 4000)
    assert (resolved.epochs, resolved.learning_rate) == (1, 2.5e-6) and "pairs" in auto["epochs"]["rule"]


def test_a_lora_adapter_as_base_is_refused(tmp_path: Path, dpo_cli: Path, prefs: Path) -> None:
    with pytest.raises(UserError, match="LoRA adapter folder"):
        finetune("dpo-lora", base=str(dpo_cli / "final"), data=prefs, out=tmp_path / "x", progress=False)
