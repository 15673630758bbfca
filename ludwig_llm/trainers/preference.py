"""The `dpo`, `orpo` and `kto` trainers: the finetune recipe with a preference loss.

Everything but the loss and the rows is FineTuneRecipe's: strategies, optimizer, schedule, length-grouped
batches, checkpoints and exact resume, early stopping, saving. Each row gives two sequences, forwarded
together: a pair's chosen and rejected responses (dpo, orpo); a kto row's response and a mismatched one
(its prompt with the next row's response, without gradient) for the KL reference point. The loss of a step
is the mean over its rows of the per-row preference loss (plus, for orpo, the chosen responses' token loss
normalised by their target tokens), however the rows fall into micro-batches and workers.

The reference model (dpo, kto) is the policy with its adapter switched off (peft's `disable_adapter`, no
second copy), or a frozen copy of the base model without an adapter.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from ludwig_llm.data.tokenize import IGNORE_INDEX
from ludwig_llm.errors import UserError
from ludwig_llm.models.build import build_llm
from ludwig_llm.models.modes import evaluating
from ludwig_llm.trainers.batches import scores_first_label, worker_share
from ludwig_llm.trainers.finetune import FineTuneRecipe, _adalora_update
from ludwig_llm.trainers.preference_losses import dpo_loss, kto_loss, orpo_odds_ratio_loss, sequence_log_probs
from ludwig_llm.trainers.session import step_loss_over_workers, sums_over_workers

STATISTICS = ("loss_sum", "chosen_sum", "chosen_rows", "rejected_sum", "rejected_rows", "correct", "rows", "nll_sum", "tokens")


class PreferenceRecipe(FineTuneRecipe):
    lower_is_better = {"loss": True, "reward_accuracy": False, "reward_margin": False}

    def setup(self) -> None:
        super().setup()
        if scores_first_label(self.model):
            raise UserError("adapter: prompt-learning adapters (prompt_tuning, p_tuning) are not supported by preference "
                            "trainers; use lora or another weight adapter.")
        rows = self.job.train_rows
        self.pairs = self.trainer.type in ("dpo", "orpo")
        self.lengths = [max(len(r["input_ids"]), len(r.get("rejected_input_ids", ()))) for r in rows]
        self.uses_reference = self.trainer.type in ("dpo", "kto")
        self.beta = {"dpo": "dpo_beta", "orpo": "orpo_beta", "kto": "kto_beta"}[self.trainer.type]
        self.beta = getattr(self.trainer, self.beta)
        self.reference = None
        if self.uses_reference and self.config.adapter is None:
            reference = build_llm(self.config, for_training=False, base_model_path=self.job.base_model_path, device=self.device).model
            self.reference = self.strategy.prepare_frozen(reference.requires_grad_(False).eval())
        self.reference_cache = {"train": None, "validation": None}
        if self.uses_reference and self.trainer.precompute_ref_log_probs:
            batch = self.trainer.eval_batch_size
            for split, source in (("train", rows), ("validation", self.job.validation_rows)):
                values = [self._reference_log_probs(source, list(range(i, min(i + batch, len(source)))))
                          for i in range(0, len(source), batch)]
                self.reference_cache[split] = torch.cat(values).cpu() if values else None
            self.reference = None  # the cache replaces the copy

    def training_shape(self):
        sequences, longest = super().training_shape()
        return 2 * sequences, longest  # chosen and rejected (KTO: the rows and their mismatched KL pairs) in one pass

    # ------------------------------------------------------------ sequences and log-probabilities

    def _second_sequence(self, rows: Sequence[dict], index: int) -> dict:
        """A pair's rejected response; for kto, this row's prompt with the next row's response (KL estimate)."""
        row = rows[index]
        if self.pairs:
            return {"input_ids": row["rejected_input_ids"], "labels": row["rejected_labels"]}
        other = rows[(index + 1) % len(rows)]
        prompt = _prompt_length(row["labels"])
        response = other["input_ids"][_prompt_length(other["labels"]):]
        return {"input_ids": row["input_ids"][:prompt] + response, "labels": [IGNORE_INDEX] * prompt + response}

    def _sequences(self, rows: Sequence[dict], indices: List[int]) -> List[dict]:
        first = [{"input_ids": rows[i]["input_ids"], "labels": rows[i]["labels"]} for i in indices]
        return first + [self._second_sequence(rows, i) for i in indices]

    def _log_probs(self, model, sequences: List[dict]):
        inputs = {k: v.to(self.device) for k, v in self.collate(sequences).items()}
        with self.autocast:
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        return sequence_log_probs(logits, inputs["labels"])

    def _reference_log_probs(self, rows: Sequence[dict], indices: List[int]) -> torch.Tensor:
        """(rows, 2): the reference model's log-probabilities of each row's two sequences."""
        sequences = self._sequences(rows, indices)
        if self.reference is not None:
            with torch.no_grad():
                log_probs, _ = self._log_probs(self.reference, sequences)
        else:  # the policy without its adapter, in eval mode (no dropout), as the base model it started from.
            # Under fsdp and deepspeed self.model is the sharded module itself (its hooks gather the weights): every
            # worker calls this for the same micro-batches, as those forward passes are collective.
            with evaluating(self.model, torch.no_grad), self.model.disable_adapter():
                log_probs, _ = self._log_probs(self.model, sequences)
        return log_probs.view(2, len(indices)).T

    def _row_losses(self, model, rows: Sequence[dict], indices: List[int], split: str):
        """The per-row losses (with gradient), the summed chosen-token loss (orpo) and the statistics' sums."""
        n, trainer = len(indices), self.trainer
        if self.pairs:
            log_probs, counts = self._log_probs(model, self._sequences(rows, indices))
            first, second = log_probs[:n], log_probs[n:]
        else:
            sequences = self._sequences(rows, indices)
            first, counts = self._log_probs(model, sequences[:n])
            with torch.no_grad():
                second, _ = self._log_probs(model, sequences[n:])
        reference = None
        if self.uses_reference:
            cache = self.reference_cache[split]
            reference = cache[indices].to(self.device) if cache is not None else self._reference_log_probs(rows, indices)
        nll = torch.zeros((), device=self.device)
        if trainer.type == "dpo":
            losses, rewards = dpo_loss(first, second, reference[:, 0], reference[:, 1], self.beta,
                                       trainer.dpo_loss_type, trainer.dpo_label_smoothing)
            chosen, rejected = rewards["chosen"], rewards["rejected"]
        elif trainer.type == "orpo":
            losses, rewards = orpo_odds_ratio_loss(first / counts[:n], second / counts[n:], self.beta)
            chosen, rejected = rewards["chosen"], rewards["rejected"]
            nll = -first.sum()
        else:
            desirable = torch.tensor([rows[i]["desirable"] for i in indices], device=self.device)
            kl = (second - reference[:, 1]).mean()
            losses, rewards = kto_loss(first, reference[:, 0], desirable, kl, self.beta,
                                       trainer.desirable_weight, trainer.undesirable_weight)
            chosen, rejected = rewards[desirable], rewards[~desirable]
        if self.pairs:
            correct = (chosen > rejected).sum().item()
        else:  # a kto reward is right when its sign agrees with the label
            correct = (rewards > 0).eq(desirable).sum().item()
        sums = {"loss_sum": losses.detach().sum().item(), "chosen_sum": chosen.sum().item(), "chosen_rows": chosen.numel(),
                "rejected_sum": rejected.sum().item(), "rejected_rows": rejected.numel(), "correct": correct, "rows": n,
                "nll_sum": nll.detach().item(), "tokens": counts[:n].sum().item()}
        return losses, nll, sums

    # ------------------------------------------------------------ training and evaluation

    def train_step(self, micro_batches: List[List[int]]) -> float:
        """One optimizer step: the mean per-row loss of its rows (+ orpo's chosen-token loss over their target tokens)."""
        session, strategy = self.session, self.strategy
        rows = sum(len(batch) for batch in micro_batches)
        tokens = max(1, sum(self.row_targets[i] for batch in micro_batches for i in batch))
        totals, loss_sum = dict.fromkeys(STATISTICS, 0.0), 0.0
        for index, batch in enumerate(micro_batches):
            share = worker_share(batch, session.rank, session.world_size)
            with strategy.micro_batch(index == len(micro_batches) - 1):
                losses, nll, sums = self._row_losses(strategy.train_model, self.job.train_rows, share or batch[:1], "train")
                loss = (losses.sum() / rows + nll / tokens) * session.world_size
            loss = loss if share else loss * 0.0
            strategy.backward(loss, self.scaler)
            loss_sum += loss.item()
            if share:
                totals = {k: totals[k] + sums[k] for k in STATISTICS}
        strategy.optimizer_step(self.scheduler, self.trainer.max_grad_norm, self.scaler)
        _adalora_update(self.model, self.state.step)
        strategy.zero_grad()
        self.state.step += 1
        self.step_statistics = _summary(sums_over_workers(totals, session, self.device))
        return step_loss_over_workers(loss_sum, session, self.device)

    def _log(self, loss: float, progress) -> None:
        state, stats = self.state, self.step_statistics
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}", reward_accuracy=f"{stats['reward_accuracy']:.2f}",
                             reward_margin=f"{stats['reward_margin']:.3f}", epoch=state.epoch)
        if state.step % self.trainer.logging_steps == 0 or state.step == 1:
            record = {k: v for k, v in stats.items() if k != "loss"}
            state.steps.append({"step": state.step, "epoch": state.epoch, "loss": loss, **record,
                                "learning_rate": self.scheduler.get_last_lr()[0]})

    def _validation_metrics(self) -> dict:
        """Every worker scores every validation row (the model's forward passes stay collective)."""
        rows, batch = self.job.validation_rows, self.trainer.eval_batch_size
        totals = dict.fromkeys(STATISTICS, 0.0)
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(rows), batch):
                _, _, sums = self._row_losses(self.model, rows, list(range(start, min(start + batch, len(rows)))), "validation")
                totals = {k: totals[k] + sums[k] for k in STATISTICS}
        return _summary(totals)


def _summary(sums: dict) -> dict:
    """Means from sums: the loss (orpo: plus the chosen-token loss), rewards, margin and reward accuracy."""
    chosen = sums["chosen_sum"] / max(1, sums["chosen_rows"])
    rejected = sums["rejected_sum"] / max(1, sums["rejected_rows"])
    loss = sums["loss_sum"] / max(1, sums["rows"]) + sums["nll_sum"] / max(1, sums["tokens"])
    return {"loss": loss, "chosen_reward": chosen, "rejected_reward": rejected, "reward_margin": chosen - rejected,
            "reward_accuracy": sums["correct"] / max(1, sums["rows"])}


def _prompt_length(labels: Sequence[int]) -> int:
    """Leading positions outside the loss: the prompt of a row encoded without `train_on_inputs`."""
    for position, label in enumerate(labels):
        if label != IGNORE_INDEX:
            return position
    return len(labels)


run_preference = PreferenceRecipe.run  # the worker function
