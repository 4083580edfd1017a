"""Tiny models really learn, checkpoints load in the harness, the manifest is true, resume is exact,
and a 2-process accelerate (gloo) run works.

The tiny models (vocab 512, 32 dims) memorise four prompt/completion rows in
~100 optimizer steps. The LoRA run uses the tiny Llama and also adapts its
(untied) `lm_head`: with the output projection frozen at its random init (std
0.02) the logits cannot move more than about half a nat, so the adapter could
not make any answer confident. (GPT-2 ties `lm_head` to the embeddings, and
targeting it is refused: a merged adapter would change the embeddings too.)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tunegate.core.errors import UserError
from tunegate.finetune import CHECKPOINT_RECORD, TrainingInterrupted, finetune

ROOT = Path(__file__).resolve().parents[2]
LORA = ["method=lora", "epochs=60", "batch_size=2", "learning_rate=0.01", "warmup_ratio=0", "lora.r=8", "lora.dropout=0",
        "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head]",
        "save_every_epoch=false", "save_every_steps=40"]
FULL = ["method=full", "epochs=40", "batch_size=2", "learning_rate=0.01", "warmup_ratio=0", "weight_decay=0",
        "save_every_epoch=false", "save_every_steps=40"]

pytestmark = pytest.mark.slow


def _run(tmp: Path, base: Path, train: Path, name: str, overrides: list[str], recipe: str = "sft-lora.yaml", **kw):
    import torch

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEGATE_CACHE", str(tmp / "cache"))
        return finetune(ROOT / "fine_tune" / recipe, base=str(base), data=train, eval_data=train, out=tmp / name,
                        overrides=overrides, progress=False, **kw)


@pytest.fixture(scope="module")
def train_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"prompt": "Q: color of sky? A:", "completion": " blue"},
            {"prompt": "Q: color of grass? A:", "completion": " green"},
            {"prompt": "Q: two plus two? A:", "completion": " four"},
            {"prompt": "Q: capital of France? A:", "completion": " Paris"}]
    path = tmp_path_factory.mktemp("ftdata") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_llama_dir: Path, train_path: Path):
    return _run(tmp_path_factory.mktemp("lora"), tiny_llama_dir, train_path, "out", LORA)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir: Path, train_path: Path):
    return _run(tmp_path_factory.mktemp("full"), tiny_model_dir, train_path, "out", FULL, recipe="sft-full.yaml")


def _greedy(spec_kwargs: dict, prompts: list[str]) -> list[str]:
    from tunegate.backends.hf import HFBackend
    from tunegate.core.model_spec import ModelSpec
    from tunegate.core.request import GenerateRequest

    backend = HFBackend(ModelSpec(device="cpu", **spec_kwargs))
    try:
        return [r.text for r in backend.generate([GenerateRequest(prompt=p, max_new_tokens=6) for p in prompts])]
    finally:
        backend.close()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lora_learns_and_adapter_checkpoints_serve(lora_run, tiny_llama_dir: Path, train_path: Path) -> None:
    hist = lora_run.manifest["eval_loss_history"]
    assert [h["step"] for h in hist] == [0, 40, 80, 120]
    assert hist[0]["loss"] > 5.5 and hist[-1]["loss"] < 0.3 and hist[1]["loss"] < hist[0]["loss"]
    rows = _rows(train_path)
    texts = _greedy({"model": str(tiny_llama_dir), "adapter": str(lora_run.final_dir)}, [r["prompt"] for r in rows])
    assert texts == [r["completion"] for r in rows]
    final = lora_run.final_dir
    assert sorted(p.name for p in final.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                        CHECKPOINT_RECORD]
    cfg = json.loads((final / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_llama_dir.resolve())
    assert "lm_head" in cfg["target_modules"] and len(cfg["target_modules"]) == 8


def test_full_learns_and_checkpoints_are_plain_hf_folders(full_run, train_path: Path) -> None:
    hist = full_run.manifest["eval_loss_history"]
    assert [h["step"] for h in hist] == [0, 40, 80]
    assert hist[0]["loss"] > 5.5 and hist[-1]["loss"] < 0.3
    rows = _rows(train_path)
    assert _greedy({"model": str(full_run.final_dir)}, [r["prompt"] for r in rows]) == [r["completion"] for r in rows]
    ckpt = full_run.out / "checkpoint-40"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()
    assert not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.pt"))
    assert full_run.manifest["recipe"]["lora"] is None


def test_manifest_is_present_and_true(lora_run, tiny_llama_dir: Path, train_path: Path) -> None:
    from tunegate.core.fingerprint import fingerprint_folder

    m = lora_run.manifest
    assert json.loads((lora_run.out / "manifest.json").read_text()) == json.loads(json.dumps(m))
    assert m["status"] == "complete" and m["method"] == "lora"
    assert m["data"]["path"] == str(train_path.resolve())
    assert m["data"]["sha256"] == hashlib.sha256(train_path.read_bytes()).hexdigest()
    assert (m["data"]["rows"], m["data"]["rows_used"], m["data"]["rows_dropped_for_length"]) == (4, 4, 0)
    assert m["eval_data"]["sha256"] == m["data"]["sha256"] and m["eval_data"]["rows"] == 4
    assert m["base"]["fingerprint"] == fingerprint_folder(tiny_llama_dir)
    assert m["steps"] == {"completed": 120, "total": 120, "per_epoch": 2, "epochs": 60}
    assert [h["step"] for h in m["train_loss_history"]] == list(range(1, 121))
    assert m["recipe"]["epochs"] == 60 and m["recipe"]["learning_rate"] == 0.01 and m["seed"] == 0
    assert m["recipe"]["precision"] == "fp32" and m["recipe"]["lora"]["r"] == 8
    assert m["recipe_hash"] == hashlib.sha256(json.dumps({k: v for k, v in m["recipe"].items()
                                                          if k != "lora_target_modules_resolved"},
                                                         sort_keys=True).encode()).hexdigest()
    assert m["overrides"]["lora.r"] == 8 and set(m["auto"]) == {"max_length"}  # epochs and lr were given
    assert m["devices"]["num_processes"] == 1 and m["devices"]["device_type"] == "cpu"
    assert set(m["libraries"]) >= {"torch", "transformers", "accelerate", "peft"}
    assert m["parameters"]["trainable"] < m["parameters"]["total"]
    assert [(c["step"], c["path"]) for c in m["checkpoints"]] == [(40, "checkpoint-40"), (80, "checkpoint-80")]
    assert m["checkpoints"][0]["epoch"] == 20.0
    mean_40 = sum(h["loss"] for h in m["train_loss_history"][:40]) / 40
    assert m["checkpoints"][0]["train_loss"] == pytest.approx(mean_40)
    assert m["checkpoints"][0]["eval_loss"] == m["eval_loss_history"][1]["loss"]
    assert m["final"]["step"] == 120 and m["final"]["path"] == "final"
    assert m["energy"]["status"] == "unavailable" and m["energy"]["kwh"] is None and m["energy"]["reason"]
    assert m["wall_time_s"] > 0 and m["device_hours"] == pytest.approx(m["wall_time_s"] / 3600)
    assert m["tokens_seen"] > 0 and m["tokens_per_second"] > 0
    assert not (lora_run.out / "state").exists()  # a complete run keeps no resumable state


def test_checkpoint_record_is_what_the_harness_shows(lora_run, tiny_llama_dir: Path) -> None:
    from tunegate.backends.hf import HFBackend
    from tunegate.core.model_spec import ModelSpec

    m = lora_run.manifest
    rec = json.loads((lora_run.out / "checkpoint-40" / CHECKPOINT_RECORD).read_text())
    assert {k: rec[k] for k in ("step", "epoch", "method", "base", "base_fingerprint", "data_sha256", "recipe_hash",
                                "final")} == {
        "step": 40, "epoch": 20.0, "method": "lora", "base": str(tiny_llama_dir.resolve()),
        "base_fingerprint": m["base"]["fingerprint"], "data_sha256": m["data"]["sha256"],
        "recipe_hash": m["recipe_hash"], "final": False}
    backend = HFBackend(ModelSpec(model=str(tiny_llama_dir), adapter=str(lora_run.out / "checkpoint-40"), device="cpu"))
    try:
        ident = backend.identity()
    finally:
        backend.close()
    assert ident["finetune"]["step"] == 40 and ident["finetune"]["data_sha256"] == m["data"]["sha256"]


def test_resume_continues_from_the_saved_step(tmp_path: Path, tiny_model_dir: Path, train_path: Path) -> None:
    over = ["epochs=6", "batch_size=2", "learning_rate=0.01", "lora.dropout=0.1", "save_every_epoch=false",
            "save_every_steps=3", "warmup_ratio=0.2"]  # 2 steps per epoch: step 3 is mid-epoch
    straight = _run(tmp_path, tiny_model_dir, train_path, "straight", over)
    with pytest.raises(TrainingInterrupted, match="step 6"):
        _run(tmp_path, tiny_model_dir, train_path, "cut", over, stop_after_step=6)
    cut = tmp_path / "cut"
    m = json.loads((cut / "manifest.json").read_text())
    assert m["status"] == "interrupted" and [c["step"] for c in m["checkpoints"]] == [3]
    saved = json.loads((cut / "state" / "trainer_state.json").read_text())
    assert (saved["global_step"], saved["epoch"], saved["batches_in_epoch"]) == (3, 1, 1)
    with pytest.raises(UserError, match="already holds a fine-tuning run"):
        _run(tmp_path, tiny_model_dir, train_path, "cut", over)
    with pytest.raises(UserError, match="recipe"):
        _run(tmp_path, tiny_model_dir, train_path, "cut", over + ["lora.r=4"], resume=True)
    resumed = _run(tmp_path, tiny_model_dir, train_path, "cut", over, resume=True)
    a, b = straight.manifest, resumed.manifest
    assert b["status"] == "complete" and b["steps"]["completed"] == 12
    assert [h["step"] for h in b["train_loss_history"]] == list(range(1, 13))
    assert [h["loss"] for h in b["train_loss_history"]] == pytest.approx([h["loss"] for h in a["train_loss_history"]],
                                                                         abs=1e-5)
    assert [h["lr"] for h in b["train_loss_history"]] == pytest.approx([h["lr"] for h in a["train_loss_history"]])
    assert [c["step"] for c in b["checkpoints"]] == [3, 6, 9]
    assert b["eval_loss_history"][-1]["loss"] == pytest.approx(a["eval_loss_history"][-1]["loss"], abs=1e-5)
    assert len(b["segments"]) == 2 and b["segments"][0]["interrupted"] and b["segments"][1]["steps"] == [3, 12]
    with pytest.raises(UserError, match="already complete"):
        _run(tmp_path, tiny_model_dir, train_path, "cut", over, resume=True)


def test_interrupted_before_any_checkpoint_starts_over(tmp_path: Path, tiny_model_dir: Path, train_path: Path) -> None:
    over = ["epochs=2", "batch_size=2", "save_every_epoch=false", "save_every_steps=3"]
    with pytest.raises(TrainingInterrupted, match="rerun the same command without --resume"):
        _run(tmp_path, tiny_model_dir, train_path, "early", over, stop_after_step=1)
    again = _run(tmp_path, tiny_model_dir, train_path, "early", over, resume=True)  # nothing to resume: starts over
    assert again.manifest["status"] == "complete" and again.manifest["steps"]["completed"] == 4
    assert [c["step"] for c in again.manifest["checkpoints"]] == [3]


def test_lora_on_a_tied_output_layer_is_refused(tmp_path: Path, tiny_model_dir: Path, train_path: Path) -> None:
    with pytest.raises(UserError, match="ties to its input embeddings"):
        _run(tmp_path, tiny_model_dir, train_path, "tied", ["lora.target_modules=[c_attn,lm_head]", "epochs=1"])
    assert not (tmp_path / "tied" / "manifest.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_accelerate_launch_on_cpu(tmp_path: Path, tiny_model_dir: Path, train_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNEGATE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "fine_tune" / "accelerate" / "ddp-cpu.yaml"), "--main_process_port", str(_free_port()),
           "-m", "tunegate.cli", "finetune", str(ROOT / "fine_tune" / "sft-lora.yaml"), "--base", str(tiny_model_dir),
           "--data", str(train_path), "--eval", str(train_path), "--out", str(out), "--no-progress",
           "epochs=2", "batch_size=1", "learning_rate=0.01", "save_every_epoch=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # only the main process reports
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["devices"]["num_processes"] == 2 and m["devices"]["distributed_type"] == "MULTI_CPU"
    assert m["devices"]["backend"] == "gloo" and len(m["devices"]["names"]) == 2
    # 4 rows, batch 1 per process, 2 processes: 2 optimizer steps per epoch
    assert m["steps"] == {"completed": 4, "total": 4, "per_epoch": 2, "epochs": 2}
    assert [c["step"] for c in m["checkpoints"]] == [2]
    assert m["device_hours"] == pytest.approx(2 * m["wall_time_s"] / 3600)
    assert (out / "final" / "adapter_model.safetensors").is_file()
    assert m["eval_loss_history"][-1]["loss"] < m["eval_loss_history"][0]["loss"]


def test_cli_on_the_shipped_recipe_and_data(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    """The documented command on the shipped example data; `auto` and the max_length clamp are recorded."""
    from tunegate.cli import main

    out = tmp_path / "cli"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEGATE_CACHE", str(tmp_path / "cache"))
        main(["finetune", str(ROOT / "fine_tune" / "sft-lora.yaml"), "--base", str(tiny_model_dir),
              "--data", str(ROOT / "fine_tune" / "data" / "example_chat.jsonl"),
              "--eval", str(ROOT / "fine_tune" / "data" / "support_eval.jsonl"),
              "--out", str(out), "max_steps=3", "batch_size=4", "--no-progress"])
    assert "wrote " in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"]["completed"] == 3
    assert m["auto"]["epochs"]["value"] == 10 and m["auto"]["learning_rate"]["value"] == 2e-4  # N = 6 rows
    assert m["auto"]["max_length"] == {"value": 128, "requested": 512, "rule": "clamped to the model's maximum positions"}
    assert m["data"]["formats"] == {"chat": 6} and m["eval_data"]["rows"] == 12
    assert m["recipe"]["lora_target_modules_resolved"] == ["c_attn"]  # peft's GPT-2 default
