"""The training loop: accelerate + a plain PyTorch loop, single process or under `accelerate launch`.

Everything a user can get wrong (recipe keys, data rows, the output folder,
the base) is checked in `prepare.prepare()` before the process group starts or
a model loads. The loop then trains with gradient accumulation, saves
`checkpoint-<step>/` folders (model or adapter + `tunegate_checkpoint.json`),
keeps the latest resumable state (optimizer, scheduler, RNG) in `OUT/state/`
(`resume.py`), and rewrites `OUT/manifest.json` at every checkpoint, so an
interrupted run says how far it got and `--resume` continues from the last checkpoint.

Data order is a seeded permutation per epoch computed identically in every
process, so a resumed run replays exactly the batches an uninterrupted one
would have seen.

`Trainer` is SFT; `dpo.DpoTrainer` overrides the "objective hooks" below and `evaluate`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.errors import IncompleteError
from tunegate.core.provenance import config_hash, now_iso
from tunegate.finetune import data as fdata
from tunegate.finetune.energy import EnergyMeter, run_energy, segment_energy
from tunegate.finetune.manifest import MANIFEST_NAME, TrainerState, build_manifest, checkpoint_record, data_block, write_manifest
from tunegate.finetune.modeling import load_model, parameter_counts, resolved_lora_targets, save_model_folder
from tunegate.finetune.prepare import Prepared
from tunegate.finetune.recipe import resolved_dict
from tunegate.finetune.resume import check_resumable, discard_state, record_segments, restore, save_state

MIXED = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


class TrainingInterrupted(IncompleteError):
    """Training stopped before the last step; `--resume` continues from the last checkpoint."""


@dataclass
class FinetuneResult:
    """What `finetune()` returns: the output folder and its manifest."""

    out: Path
    manifest: dict[str, Any]
    final_dir: Path
    checkpoints: list[Path] = field(default_factory=list)
    main_process: bool = True


class Trainer:
    """One training run (or one resumed segment of it) over a `Prepared` job."""

    def __init__(self, prep: Prepared, progress: bool = True, stop_after_step: int | None = None) -> None:
        self.p = prep
        self.r = prep.recipe
        self.progress = progress
        self.stop_after_step = stop_after_step
        self.recipe_dict = resolved_dict(self.r)
        self.recipe_hash = config_hash(self.recipe_dict)
        self.state = TrainerState()
        self.segment_start = time.time()
        self.train_seconds = 0.0
        self.first_step = 0
        self.eval_extras: dict[str, Any] = {}  # what `evaluate` measured besides the loss (DPO: reward margin...)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState
        from accelerate.utils import set_seed
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the training bar is the one users read
        AcceleratorState._reset_state()  # several runs in one Python process (tests, notebooks)
        GradientState._reset_state()
        self.acc = Accelerator(cpu=self.p.use_cpu, mixed_precision=MIXED[self.p.precision],
                               gradient_accumulation_steps=self.r.gradient_accumulation,
                               step_scheduler_with_optimizer=False)
        set_seed(self.r.seed)
        model = load_model(self.p.base, self.r, self.p.precision,
                           fp32_weights=self.acc.distributed_type.value == "FSDP")
        self.params = parameter_counts(model)
        self.lora_targets = resolved_lora_targets(model)
        pad_id = self.p.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.p.tokenizer.eos_token_id if self.p.tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad_id)
        self.dataset = fdata.ExampleDataset(self.p.train_tok.examples)
        # The loader gets its own generator: starting an iterator draws a seed from it, and drawing from
        # the global RNG instead would shift the dropout masks of a resumed run against an uninterrupted one.
        loader: torch.utils.data.DataLoader[fdata.Example] = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.r.batch_size, shuffle=False,  # type: ignore[arg-type]
            collate_fn=self._collate,
            generator=torch.Generator().manual_seed(self.r.seed))
        trainable = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.ndim >= 2]
        no_decay = [p for p in trainable if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.r.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=float(self.r.learning_rate))
        model, optimizer, loader = self.acc.prepare(model, optimizer, loader)
        self.steps_per_epoch = max(1, math.ceil(len(loader) / self.r.gradient_accumulation))
        total = self.steps_per_epoch * int(self.r.epochs)
        if self.r.max_steps is not None:
            total = min(total, self.r.max_steps)
        from transformers import get_scheduler

        scheduler = get_scheduler(self.r.lr_scheduler if self.r.lr_scheduler != "constant" else "constant_with_warmup",
                                  optimizer, num_warmup_steps=int(self.r.warmup_ratio * total), num_training_steps=total)
        scheduler = self.acc.prepare(scheduler)
        self.model, self.optimizer, self.loader, self.scheduler = model, optimizer, loader, scheduler
        self.total_steps = total
        if self.r.method == "lora" and self.acc.distributed_type.value != "FSDP":
            # The adapter is in each checkpoint folder; the frozen base need not be copied into state/.
            self.acc.register_save_state_pre_hook(lambda models, weights, out: weights.clear())
            self.acc.register_load_state_pre_hook(lambda models, inp: models.clear())
        self.meter = EnergyMeter(self.acc.device)
        if self.acc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.acc.device)

    # ------------------------------------------------- objective hooks (SFT)
    def _collate(self, batch: list[Any]) -> dict[str, Any]:
        return fdata.collate(batch, self.pad_id)

    def _train_loss(self, batch: dict[str, Any]) -> Any:
        """The loss to backpropagate for one micro-batch: mean token cross-entropy over completion tokens."""
        s, n = self._loss(batch)
        return s / n.clamp(min=1)

    def _step_extras(self) -> dict[str, Any]:  # more per-step numbers; every process calls it at each step
        return {}

    def _manifest_extras(self) -> dict[str, Any]:
        return {"objective": "sft"}

    # --------------------------------------------------------------- helpers
    def _loss(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        """Sum of token cross-entropies over label positions, and their count (computed in fp32)."""
        import torch.nn.functional as F

        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1, :].float()
        labels = batch["labels"][:, 1:]
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                ignore_index=fdata.IGNORE_INDEX, reduction="sum")
        return total, (labels != fdata.IGNORE_INDEX).sum()

    def evaluate(self) -> float | None:
        """Token-weighted eval loss; every process runs the same number of batches (padding rows weigh 0)."""
        import torch

        if self.p.eval_tok is None:
            return None
        world, rank, bs = self.acc.num_processes, self.acc.process_index, self.r.batch_size
        mine: list[fdata.Example | None] = list(self.p.eval_tok.examples[rank::world])
        per_rank = math.ceil(len(self.p.eval_tok.examples) / world)
        mine += [None] * (per_rank - len(mine))
        total = torch.zeros(2, dtype=torch.float64, device=self.acc.device)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, per_rank, bs):
                batch = {k: v.to(self.acc.device) for k, v in fdata.collate(mine[i:i + bs], self.pad_id).items()}
                with self.acc.autocast():
                    s, n = self._loss(batch)
                total[0] += s.double()
                total[1] += n.double()
        self.model.train()
        total = self.acc.reduce(total, "sum")
        return float(total[0] / total[1]) if total[1] > 0 else None

    def _epoch_float(self, epoch: int, batches: int) -> float:
        return epoch + batches / max(1, len(self.loader))

    def _record(self, step: int, epoch: float, final: bool, train_loss: float | None,
                eval_loss: float | None) -> dict[str, Any]:
        return checkpoint_record(step=step, epoch=epoch, method=self.r.method, base=self.p.base.ref,
                                 base_fingerprint=self.p.base_fingerprint, data_path=str(self.p.train.path),
                                 data_sha256=self.p.train.sha256,
                                 eval_sha256=self.p.eval.sha256 if self.p.eval else None,
                                 recipe_hash=self.recipe_hash, final=final, train_loss=train_loss,
                                 eval_loss=eval_loss, created_at=now_iso())

    def _write_model(self, folder: Path, record: dict[str, Any]) -> None:
        self.acc.wait_for_everyone()
        state_dict = self.acc.get_state_dict(self.model)  # every rank takes part (FSDP gathers here)
        if self.acc.is_main_process:
            save_model_folder(self.acc.unwrap_model(self.model), state_dict, self.p.tokenizer, self.r.method,
                              folder, record)
        self.acc.wait_for_everyone()

    def _mean_train_loss_since(self, step: int) -> float | None:
        losses = [h["loss"] for h in self.state.train_loss_history if h["step"] > step]
        return sum(losses) / len(losses) if losses else None

    def _eval_at(self, step: int, epoch: float) -> float | None:
        if self.state.eval_loss_history and self.state.eval_loss_history[-1]["step"] == step:
            return self.state.eval_loss_history[-1]["loss"]
        loss = self.evaluate()
        if loss is not None:
            self.state.eval_loss_history.append({"step": step, "epoch": round(epoch, 4), "loss": loss,
                                                 **self.eval_extras})
        return loss

    def _segment(self, energy: dict[str, Any], interrupted: bool) -> dict[str, Any]:
        return {"started_at": self.segment_iso,
                "wall_s": time.time() - self.segment_start, "train_s": self.train_seconds,
                "num_processes": self.acc.num_processes, "steps": [self.first_step, self.state.global_step],
                "energy": energy, "interrupted": interrupted}

    def _save_checkpoint(self, epoch: int, batches: int, next_position: tuple[int, int]) -> None:
        step = self.state.global_step
        if any(c["step"] == step for c in self.state.checkpoints):
            return
        ep = self._epoch_float(epoch, batches)
        prev = self.state.checkpoints[-1]["step"] if self.state.checkpoints else 0
        train_loss = self._mean_train_loss_since(prev)
        eval_loss = self._eval_at(step, ep)
        folder = self.p.out / f"checkpoint-{step}"
        self._write_model(folder, self._record(step, ep, False, train_loss, eval_loss))
        self.state.checkpoints.append({"step": step, "epoch": round(ep, 4), "path": folder.name,
                                       "train_loss": train_loss, "eval_loss": eval_loss})
        self.state.epoch, self.state.batches_in_epoch = next_position
        energy = segment_energy(self.meter, self.acc, collective=True)
        save_state(self.acc, self.p.out, lambda: self._view(self.state.segments + [self._segment(energy, interrupted=True)]))
        self._write_manifest("running")

    def _view(self, segments: list[dict[str, Any]]) -> TrainerState:
        """A copy of the trainer state with these segments (the current one included) for the manifest or state/."""
        view = TrainerState(**{**self.state.__dict__})
        view.segments = segments
        return view

    def _devices(self) -> dict[str, Any]:
        import torch
        from accelerate.utils import gather_object

        dev = self.acc.device
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores visible)"
        return {"num_processes": self.acc.num_processes, "distributed_type": str(self.acc.distributed_type.value),
                "device_type": dev.type, "mixed_precision": self.acc.mixed_precision, "precision": self.p.precision,
                "names": list(gather_object([name])) if self.acc.num_processes > 1 else [name],
                "backend": getattr(self.acc.state, "backend", None)}

    def _memory(self) -> dict[str, Any]:
        import resource

        import torch

        gpu = int(torch.cuda.max_memory_allocated(self.acc.device)) if self.acc.device.type == "cuda" else None
        rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB
        return {"peak_gpu_allocated_bytes_main_process": gpu, "peak_rss_bytes_main_process": rss}

    def _write_manifest(self, status: str, final: dict[str, Any] | None = None,
                        segments: list[dict[str, Any]] | None = None) -> None:
        if not self.acc.is_main_process:
            return
        view = self._view(segments if segments is not None else self.state.segments + [
            self._segment({"status": "unavailable", "kwh": None, "reason": "run in progress"}, interrupted=False)])
        eval_block = None
        if self.p.eval and self.p.eval_tok:
            et = self.p.eval_tok
            eval_block = data_block(self.p.eval.path, self.p.eval.sha256, et.rows, et.rows - len(et.dropped_for_length),
                                    et.dropped_for_length, self.p.eval.format_counts, et.trained_tokens)
        tt = self.p.train_tok
        manifest = build_manifest(
            status=status,
            base={"model": self.p.base.ref, "path": str(self.p.base.folder), "fingerprint": self.p.base_fingerprint},
            method=self.r.method,
            data={**data_block(self.p.train.path, self.p.train.sha256, tt.rows, tt.rows - len(tt.dropped_for_length),
                               tt.dropped_for_length, self.p.train.format_counts, tt.trained_tokens),
                  "examples": len(tt.examples), "packing": self.r.packing},
            eval_data=eval_block, recipe={**self.recipe_dict, "lora_target_modules_resolved": self.lora_targets},
            recipe_hash=self.recipe_hash, recipe_source=self.p.recipe_source, overrides=self.p.overrides,
            auto=self.p.auto, devices=self.devices, state=view, parameters=self.params,
            energy=run_energy(view.segments, status), memory=self._memory(), final=final,
            finished_at=now_iso() if status == "complete" else None)
        manifest.update(self._manifest_extras())
        write_manifest(self.p.out, manifest)
        self.manifest = manifest

    # ------------------------------------------------------------------ loop
    def run(self) -> FinetuneResult:
        self.segment_iso = now_iso()
        if self.p.resume:  # before any model loads
            check_resumable(self.p.out, recipe_hash=self.recipe_hash, data_sha256=self.p.train.sha256,
                            eval_sha256=self.p.eval.sha256 if self.p.eval else None,
                            base_fingerprint=self.p.base_fingerprint)
        self._setup()  # starts the process group: every process has passed prepare()'s checks by now
        if self.acc.is_main_process:
            self.p.out.mkdir(parents=True, exist_ok=True)
        if self.p.resume:
            self.state = restore(self.acc, self.model, self.p.out, self.r.method)
        else:
            self.state = TrainerState(total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                                      recipe_hash=self.recipe_hash, data_sha256=self.p.train.sha256,
                                      eval_sha256=self.p.eval.sha256 if self.p.eval else None,
                                      base_fingerprint=self.p.base_fingerprint, started_at=self.segment_iso)
        self.first_step = self.state.global_step
        self.devices = self._devices()
        if not self.p.resume:
            self._eval_at(0, 0.0)
        self._write_manifest("running")
        try:
            self._loop()
        except (KeyboardInterrupt, TrainingInterrupted):
            self._interrupted("interrupted")
            raise TrainingInterrupted(self._interrupt_message()) from None
        except Exception:
            self._interrupted("failed")  # a crash (e.g. out of memory) must not leave "running" behind
            raise
        return self._finish()

    def _interrupt_message(self) -> str:
        last = self.state.checkpoints[-1]["step"] if self.state.checkpoints else None
        where = f"the last checkpoint is step {last}; rerun with --resume" if last is not None else \
            "no checkpoint was saved yet; rerun the same command without --resume to start over"
        return f"training interrupted at step {self.state.global_step} of {self.total_steps}; {where}"

    def _interrupted(self, status: str) -> None:
        segs = self.state.segments + [self._segment(segment_energy(self.meter, self.acc, collective=False), interrupted=True)]
        self._write_manifest(status, segments=segs)
        record_segments(self.acc, self.p.out, segs)  # count the lost time too when the run resumes

    def _loop(self) -> None:
        import torch
        from tqdm import tqdm

        r, st = self.r, self.state
        bar = tqdm(total=self.total_steps, initial=st.global_step, desc="finetune", unit="step", file=sys.stderr,
                   disable=not (self.progress and self.acc.is_main_process and sys.stderr.isatty()), dynamic_ncols=True)
        self.model.train()
        start_epoch, skip = st.epoch, st.batches_in_epoch
        for epoch in range(start_epoch, int(r.epochs)):
            if st.global_step >= self.total_steps:
                break
            self.dataset.set_epoch_order(r.seed, epoch)
            loader = self.acc.skip_first_batches(self.loader, skip) if skip else self.loader
            batches, skip = (st.batches_in_epoch if epoch == start_epoch else 0), 0
            micro: list[Any] = []
            tokens = 0
            for batch in loader:
                t0 = time.time()
                with self.acc.accumulate(self.model):
                    loss = self._train_loss(batch)
                    self.acc.backward(loss)
                    if self.acc.sync_gradients and r.max_grad_norm:
                        self.acc.clip_grad_norm_(self.model.parameters(), r.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                micro.append(loss.detach().float())
                tokens += int(batch["attention_mask"].sum())
                batches += 1
                self.train_seconds += time.time() - t0
                if not self.acc.sync_gradients:
                    continue
                self.scheduler.step()
                st.global_step += 1
                summed = self.acc.reduce(torch.stack([torch.stack(micro).mean(),
                                                      torch.tensor(float(tokens), device=self.acc.device)]), "sum")
                step_loss = float(summed[0]) / self.acc.num_processes
                st.tokens_seen += int(summed[1])
                micro, tokens = [], 0
                lr = float(self.scheduler.get_last_lr()[0])
                ep = self._epoch_float(epoch, batches)
                st.train_loss_history.append({"step": st.global_step, "epoch": round(ep, 4), "loss": step_loss,
                                              "lr": lr, **self._step_extras()})
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", epoch=f"{ep:.2f}")
                end_of_epoch = batches >= len(self.loader)
                if (r.save_every_steps and st.global_step % r.save_every_steps == 0 and not end_of_epoch
                        and st.global_step < self.total_steps):
                    self._save_checkpoint(epoch, batches, (epoch, batches))
                if self.stop_after_step is not None and st.global_step >= self.stop_after_step:
                    raise TrainingInterrupted(f"stopped after step {st.global_step} (test hook)")
                if st.global_step >= self.total_steps:
                    break
            st.epoch, st.batches_in_epoch = epoch + 1, 0
            epoch_done = batches >= len(self.loader)
            due = r.save_every_epoch or (r.save_every_steps and st.global_step % r.save_every_steps == 0)
            if epoch_done and due and st.global_step < self.total_steps:
                self._save_checkpoint(epoch, batches, (epoch + 1, 0))
        bar.close()

    def _finish(self) -> FinetuneResult:
        st = self.state
        last_epoch = st.train_loss_history[-1]["epoch"] if st.train_loss_history else 0.0
        prev = st.checkpoints[-1]["step"] if st.checkpoints else 0
        train_loss = self._mean_train_loss_since(prev)
        eval_loss = self._eval_at(st.global_step, last_epoch)
        final_dir = self.p.out / "final"
        self._write_model(final_dir, self._record(st.global_step, last_epoch, True, train_loss, eval_loss))
        segs = st.segments + [self._segment(segment_energy(self.meter, self.acc, collective=True), interrupted=False)]
        final = {"step": st.global_step, "epoch": last_epoch, "path": "final", "train_loss": train_loss,
                 "eval_loss": eval_loss}
        self._write_manifest("complete", final=final, segments=segs)
        discard_state(self.acc, self.p.out)  # a complete run has nothing to resume
        manifest = getattr(self, "manifest", None)
        if manifest is None:  # non-main processes read what the main process wrote
            manifest = json.loads((self.p.out / MANIFEST_NAME).read_text(encoding="utf-8"))
        return FinetuneResult(out=self.p.out, manifest=manifest, final_dir=final_dir,
                              checkpoints=[self.p.out / c["path"] for c in st.checkpoints],
                              main_process=bool(self.acc.is_main_process))

