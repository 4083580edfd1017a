"""DPO (direct preference optimisation) on the SFT training loop: `objective: dpo` recipes.

Why the tunegate loop and not TRL's `DPOTrainer` (docs/finetune.md, "Why not TRL"): TRL's trainer is a
`transformers.Trainer`, with that trainer's own checkpoint layout, resume contract, data order and
truncation; the tunegate manifest, atomic checkpoint folders with their records, exact resume, the
refusal to resume other inputs, energy and device accounting would have to be rebuilt around it. The
DPO objective itself is small, so it is a subclass of `train.Trainer` that changes only what the
objective changes:

- a batch holds B pairs as 2B sequences (chosen rows, then rejected rows), scored in one forward pass;
- log pi(y|x) is the sum of the answer tokens' log-probabilities (the tokens SFT would train on, EOS
  included);
- the reference is the `--base` model. Its log-probabilities are computed once, before training and
  before a resumed run restores its weights, for every training and eval pair: for LoRA with the
  adapter disabled, for full fine-tuning with the weights as loaded; so no second model is kept;
- with d = (log pi(c) - log pi_ref(c)) - (log pi(r) - log pi_ref(r)) and beta from the recipe:
  sigmoid: -log sigmoid(beta d) (Rafailov et al. 2023); hinge: max(0, 1 - beta d) (SLiC);
  ipo: (d - 1 / (2 beta))^2 (Azar et al. 2023, on sequence sums);
- rewards are beta (log pi(y) - log pi_ref(y)); per optimizer step the manifest records the loss, the
  mean reward margin (chosen minus rejected), the reward accuracy (share of pairs with margin > 0) and
  the mean chosen and rejected rewards, pair-weighted over micro-batches and processes.
"""

from __future__ import annotations

from typing import Any

from tunegate.finetune import preference_data as pdata
from tunegate.finetune.data import IGNORE_INDEX
from tunegate.finetune.train import Trainer

#: accumulator slots: summed over pairs (weight 1; an eval padding slot weighs 0)
LOSS, MARGIN, CORRECT, PAIRS, CHOSEN, REJECTED = range(6)
REWARD_DEFINITION = ("reward(y) = beta * (log pi(y|x) - log pi_ref(y|x)), log-probabilities summed over the answer "
                     "tokens and EOS; margin = reward(chosen) - reward(rejected); accuracy = share of pairs with "
                     "margin > 0")


class DpoTrainer(Trainer):
    """The SFT trainer with the DPO objective (see the module docstring)."""

    def _setup(self) -> None:
        import torch

        super()._setup()
        if self.r.dpo.disable_dropout:  # the policy must score pairs as the reference did, step 0 included
            for module in self.model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        self.sums = torch.zeros(6, dtype=torch.float64, device=self.acc.device)
        self.ref = {"train": self._reference_logps(self.p.train_tok.examples)}
        if self.p.eval_tok is not None:
            self.ref["eval"] = self._reference_logps(self.p.eval_tok.examples)

    def _reference_logps(self, pairs: list[pdata.PairExample]) -> Any:
        """[n_pairs, 2] (chosen, rejected) sequence log-probabilities under the reference.

        Runs before `resume.restore()`, so the weights are the base's; every process scores every pair (the same
        forward passes everywhere, which FSDP requires), in the pairs' fixed order.
        """
        import contextlib

        import torch

        out = torch.zeros((len(pairs), 2), dtype=torch.float32, device=self.acc.device)
        unwrapped = self.acc.unwrap_model(self.model)
        adapter_off = unwrapped.disable_adapter() if self.r.method == "lora" else contextlib.nullcontext()
        self.model.eval()
        with torch.no_grad(), adapter_off:
            for i in range(0, len(pairs), self.r.batch_size):
                chunk = pairs[i:i + self.r.batch_size]
                batch = {k: v.to(self.acc.device) for k, v in pdata.collate_pairs(list(chunk), self.pad_id).items()}
                with self.acc.autocast():
                    logps = self._sequence_logps(batch)
                out[i:i + len(chunk)] = logps.view(2, -1).t().float()
        self.model.train()
        return out

    # ------------------------------------------------------------ objective hooks
    def _collate(self, batch: list[Any]) -> dict[str, Any]:
        return pdata.collate_pairs(batch, self.pad_id)

    def _sequence_logps(self, batch: dict[str, Any]) -> Any:
        """Sum of log-probabilities of each row's labelled tokens (the answer), in fp32; shape [2B]."""
        import torch.nn.functional as F

        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1, :].float()
        labels = batch["labels"][:, 1:]
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                              reduction="none").view(labels.shape)
        return -nll.sum(dim=1)

    def _pair_terms(self, batch: dict[str, Any], split: str) -> tuple[Any, Any]:
        """Per-pair losses and the accumulator row [loss, margin, correct, pairs, chosen, rejected] (weighted sums)."""
        import torch
        import torch.nn.functional as F

        logps = self._sequence_logps(batch)
        policy_c, policy_r = logps.view(2, -1)
        ref = self.ref[split][batch["index"].to(self.acc.device)]
        beta = self.r.dpo.beta
        chosen, rejected = beta * (policy_c - ref[:, 0]), beta * (policy_r - ref[:, 1])
        d = (policy_c - ref[:, 0]) - (policy_r - ref[:, 1])
        if self.r.dpo.loss_type == "sigmoid":
            losses = -F.logsigmoid(beta * d)
        elif self.r.dpo.loss_type == "hinge":
            losses = torch.relu(1 - beta * d)
        else:  # ipo
            losses = (d - 1 / (2 * beta)) ** 2
        w = batch["weight"].to(self.acc.device)
        margin = (chosen - rejected).detach().double()
        row = torch.stack([(losses.detach().double() * w).sum(), (margin * w).sum(), ((margin > 0).double() * w).sum(),
                           w.sum(), (chosen.detach().double() * w).sum(), (rejected.detach().double() * w).sum()])
        return losses, row

    def _train_loss(self, batch: dict[str, Any]) -> Any:
        losses, row = self._pair_terms(batch, "train")
        self.sums += row
        return losses.mean()

    @staticmethod
    def _summary(sums: Any) -> dict[str, Any]:
        n = float(sums[PAIRS])
        if n <= 0:
            return {}
        return {"reward_margin": float(sums[MARGIN]) / n, "reward_accuracy": float(sums[CORRECT]) / n,
                "reward_chosen": float(sums[CHOSEN]) / n, "reward_rejected": float(sums[REJECTED]) / n,
                "pairs": int(round(n))}

    def _step_extras(self) -> dict[str, Any]:
        sums = self.acc.reduce(self.sums, "sum")
        self.sums.zero_()
        return self._summary(sums)

    def evaluate(self) -> float | None:
        """Pair-weighted mean DPO loss over the eval pairs; their reward margin and accuracy go to `eval_extras`."""
        import torch

        if self.p.eval_tok is None:
            return None
        pairs = self.p.eval_tok.examples
        world, rank, bs = self.acc.num_processes, self.acc.process_index, self.r.batch_size
        mine: list[pdata.PairExample | None] = list(pairs[rank::world])
        per_rank = -(-len(pairs) // world)
        mine += [None] * (per_rank - len(mine))
        sums = torch.zeros(6, dtype=torch.float64, device=self.acc.device)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, per_rank, bs):
                batch = {k: v.to(self.acc.device)
                         for k, v in pdata.collate_pairs(mine[i:i + bs], self.pad_id, filler=pairs[0]).items()}
                with self.acc.autocast():
                    _, row = self._pair_terms(batch, "eval")
                sums += row
        self.model.train()
        sums = self.acc.reduce(sums, "sum")
        self.eval_extras = self._summary(sums)
        return float(sums[LOSS] / sums[PAIRS]) if sums[PAIRS] > 0 else None

    def _manifest_extras(self) -> dict[str, Any]:
        d = self.r.dpo
        return {"objective": "dpo", "dpo": {
            "beta": d.beta, "loss_type": d.loss_type, "disable_dropout": d.disable_dropout,
            "reference": {"kind": d.reference, "model": self.p.base.ref, "path": str(self.p.base.folder),
                          "fingerprint": self.p.base_fingerprint},
            "reference_logps": "computed once before training from the reference weights"
                               + (" (the base with the adapter disabled)" if self.r.method == "lora" else ""),
            "pairs": {"train": len(self.p.train_tok.examples),
                      "eval": len(self.p.eval_tok.examples) if self.p.eval_tok is not None else None},
            "reward_definition": REWARD_DEFINITION,
            "per_step": "train_loss_history[]: loss, reward_margin, reward_accuracy, reward_chosen, reward_rejected"}}

    def _record(self, step: int, epoch: float, final: bool, train_loss: float | None,
                eval_loss: float | None) -> dict[str, Any]:
        """The SFT record plus what makes a DPO candidate: the objective, beta and the reference."""
        rec = super()._record(step, epoch, final, train_loss, eval_loss)
        rec.update({"objective": "dpo", "dpo_beta": self.r.dpo.beta, "reference_fingerprint": self.p.base_fingerprint})
        return rec
