"""The `grpo` trainer: the finetune recipe with online sampling, rewards and GRPO's loss (see grpo_losses.py).

Each optimizer step, for the prompts of its micro-batches (this worker's share of them):
    rollout  sample `grpo_num_generations` completions of every prompt from the current model (eval mode, no
             gradient), score them with the rewards, normalise the rewards within each prompt's group
    update   forward the prompt + completion sequences (with gradient) and, for the KL term, under the reference
             model (the adapter switched off, or a frozen copy without an adapter); the loss is the mean per-token
             GRPO loss over every completion token of the step, on every worker
One update per sampling, so the sampling policy's log-probabilities are the detached current ones. Validation
generates greedily (the `generation` section) for the validation prompts and reports their mean rewards.
Everything else (strategies, optimizer, schedule, checkpoints, early stopping, saving) is FineTuneRecipe's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, List, Sequence

import torch

from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.tokenize import IGNORE_INDEX
from ludwig_llm.errors import UserError
from ludwig_llm.inference.generation import build_generation_config, clean_output, cut_at_eos, eos_token_ids, generate, left_pad
from ludwig_llm.models.build import build_llm
from ludwig_llm.trainers.batches import scores_first_label, worker_share
from ludwig_llm.trainers.finetune import FineTuneJob, FineTuneRecipe, _adalora_update
from ludwig_llm.trainers.grpo_losses import group_advantages, grpo_token_losses
from ludwig_llm.trainers.preference_losses import token_log_probs
from ludwig_llm.trainers.rewards import build_rewards
from ludwig_llm.trainers.session import step_loss_over_workers, sums_over_workers


@dataclass
class GRPOJob(FineTuneJob):
    """A FineTuneJob whose rows are prompts (`input_ids`, `labels` all ignored, `row`: the dataset row for the
    rewards), with the reward functions the Python API was given."""

    reward_functions: List[Callable] = field(default_factory=list)


@dataclass
class Rollout:
    """One micro-batch's sampled completions as generate laid them out: left-padded prompts, then the completions
    (`input_ids`, `attention_mask`, both (completions, prompt width + completion width); `labels`: the completion
    tokens, IGNORE_INDEX after each one's end), their advantages and the reward sums."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    advantages: torch.Tensor
    sums: dict

    def inputs(self, device) -> dict:
        """Model inputs: positions count real tokens only (as in generate), and logits are computed only where they
        predict a completion token (the last completion width + 1 positions), sparing the prompts' lm_head."""
        positions = (self.attention_mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": self.input_ids.to(device), "attention_mask": self.attention_mask.to(device),
                "position_ids": positions.to(device), "logits_to_keep": self.labels.shape[1] + 1}


class GRPORecipe(FineTuneRecipe):
    lower_is_better = {"reward": False}

    def setup(self) -> None:
        super().setup()
        if scores_first_label(self.model):
            raise UserError("adapter: prompt-learning adapters (prompt_tuning, p_tuning) are not supported by the grpo "
                            "trainer; use lora or another weight adapter.")
        self.tokenizer = self.built.tokenizer
        self.rewards = build_rewards(self.config, self.job.reward_functions)
        self.statistics = ["loss_sum", "kl_sum", "clipped", "tokens", "reward_sum", "completions"] + [
            f"reward_{r.name}_sum" for r in self.rewards]
        trainer, generation = self.trainer, self.config.generation
        conversation = structured_format(self.config, self.tokenizer)  # a chat input: completions end at the end of turn
        if conversation is not None:
            generation = conversation.generation_config(generation)
        self.stop_token_ids = conversation.stop_token_ids() if conversation is not None else []
        self.stop_strings = generation.stop_strings
        rollout = trainer.rollout
        sampling = dataclasses.replace(generation, do_sample=True, temperature=rollout.temperature, top_p=rollout.top_p,
                                       top_k=rollout.top_k, max_new_tokens=rollout.max_new_tokens or generation.max_new_tokens,
                                       num_beams=1, min_p=None, typical_p=1.0)
        self.sampling = build_generation_config(self.model, self.tokenizer, sampling)
        self.sampling.num_return_sequences = trainer.grpo_num_generations
        eos = eos_token_ids(self.model, self.tokenizer)
        self.eos_ids = eos + [i for i in self.stop_token_ids if i not in eos]
        self.sampling.eos_token_id = self.eos_ids
        self.greedy = dataclasses.replace(generation, do_sample=False, num_beams=1)
        self.reference = None
        if trainer.grpo_beta > 0 and self.config.adapter is None:
            self.reference = build_llm(self.config, for_training=False, base_model_path=self.job.base_model_path, device=self.device).model
            self.reference.requires_grad_(False).eval()

    def training_shape(self):
        prompts, longest_prompt = super().training_shape()
        return prompts * self.trainer.grpo_num_generations, longest_prompt + self.sampling.max_new_tokens

    # ------------------------------------------------------------ rollouts

    def _score(self, completions: Sequence[str], rows: Sequence[dict]) -> dict:
        """{reward name: tensor of scores} and `total`, the weighted sum, for each completion."""
        scores = {r.name: torch.tensor(r(completions, rows), dtype=torch.float32) for r in self.rewards}
        scores["total"] = sum(r.weight * scores[r.name] for r in self.rewards)
        return scores

    def _rollout(self, indices: List[int]) -> Rollout:
        rows, group = [self.job.train_rows[i] for i in indices], self.trainer.grpo_num_generations
        prompts = [row["input_ids"] for row in rows]
        input_ids, attention_mask = left_pad(prompts, self.sampling.pad_token_id, self.device)
        extra = {"tokenizer": self.tokenizer} if self.stop_strings else {}
        self.model.eval()
        with torch.no_grad(), self.autocast:
            generated = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=self.sampling, **extra)
        self.model.train()
        generated = generated.cpu()
        width = input_ids.shape[1]
        labels = torch.full_like(generated[:, width:], IGNORE_INDEX)
        texts = []
        for number, new in enumerate(generated[:, width:].tolist()):  # prompt-major: G rows per prompt
            completion = cut_at_eos(new, self.eos_ids, keep_eos=True)  # stopping is part of what it chose
            labels[number, :len(completion)] = torch.tensor(completion, dtype=torch.long)
            text = self.tokenizer.decode([t for t in completion if t not in self.eos_ids], skip_special_tokens=True)
            texts.append(clean_output(text, self.stop_strings))
        completed = labels != IGNORE_INDEX
        attention_mask = torch.cat([attention_mask.cpu().repeat_interleave(group, dim=0), completed.long()], dim=1)
        input_ids = torch.where(attention_mask.bool(), generated, torch.full_like(generated, self.sampling.pad_token_id))
        scores = self._score(texts, [row["row"] for row in rows for _ in range(group)])
        advantages = group_advantages(scores["total"].view(len(rows), group)).view(-1)
        sums = {"reward_sum": scores["total"].sum().item(), "completions": len(texts),
                **{f"reward_{r.name}_sum": scores[r.name].sum().item() for r in self.rewards}}
        return Rollout(input_ids, attention_mask, labels, advantages.to(self.device), sums)

    def _idle_rollout(self, index: int) -> Rollout:
        """For a worker without prompts in a micro-batch: a prompt's last token as its completion, weighted zero
        (every worker joins the same collective forward and backward passes)."""
        prompt = torch.tensor([self.job.train_rows[index]["input_ids"]], dtype=torch.long)
        return Rollout(prompt, torch.ones_like(prompt), prompt[:, -1:], torch.zeros(1, device=self.device), {})

    # ------------------------------------------------------------ the update

    def _reference_token_log_probs(self, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                with self.autocast:
                    logits = self.reference(**inputs).logits
                return token_log_probs(logits, labels)[0]
            self.model.eval()  # the policy without its adapter, and without dropout: the base model it started from
            with self.model.disable_adapter(), self.autocast:
                logits = self.model(**inputs).logits
            self.model.train()
            return token_log_probs(logits, labels)[0]

    def train_step(self, micro_batches: List[List[int]]) -> float:
        """Sample and score every micro-batch first (their completion tokens normalise the step's loss), then update."""
        session, strategy, trainer = self.session, self.strategy, self.trainer
        shares = [worker_share(batch, session.rank, session.world_size) for batch in micro_batches]
        rollouts = [self._rollout(share) if share else self._idle_rollout(batch[0]) for share, batch in zip(shares, micro_batches)]
        own_tokens = sum((r.labels != IGNORE_INDEX).sum().item() for r, share in zip(rollouts, shares) if share)
        tokens = max(1.0, sums_over_workers({"tokens": float(own_tokens)}, session, self.device)["tokens"])
        totals = dict.fromkeys(self.statistics, 0.0)
        loss_sum = 0.0
        for index, (rollout, share) in enumerate(zip(rollouts, shares)):
            inputs = rollout.inputs(self.device)
            # the kept logits predict the completion: the first of them comes from the prompt's last position
            labels = torch.cat([torch.full_like(rollout.labels[:, :1], IGNORE_INDEX), rollout.labels], dim=1).to(self.device)
            with strategy.micro_batch(index == len(micro_batches) - 1):
                with self.autocast:
                    logits = strategy.train_model(**inputs).logits
                log_probs, mask = token_log_probs(logits, labels)
                reference = self._reference_token_log_probs(inputs, labels) if trainer.grpo_beta > 0 else log_probs.detach()
                losses, kl, clipped = grpo_token_losses(log_probs, log_probs.detach(), reference, rollout.advantages,
                                                        trainer.grpo_beta, trainer.grpo_epsilon)
                loss = (losses * mask).sum() / tokens * session.world_size
            loss = loss if share else loss * 0.0
            strategy.backward(loss, self.scaler)
            loss_sum += loss.item()
            if share:
                sums = {"loss_sum": (losses.detach() * mask).sum().item(), "kl_sum": (kl * mask).sum().item(),
                        "clipped": (clipped & mask).sum().item(), "tokens": mask.sum().item(), **rollout.sums}
                totals = {k: totals[k] + sums.get(k, 0.0) for k in self.statistics}
        strategy.optimizer_step(self.scheduler, trainer.max_grad_norm, self.scaler)
        _adalora_update(self.model, self.state.step)
        strategy.zero_grad()
        self.state.step += 1
        self.step_statistics = self._summary(sums_over_workers(totals, session, self.device))
        return step_loss_over_workers(loss_sum, session, self.device)

    def _summary(self, sums: dict) -> dict:
        tokens, completions = max(1.0, sums["tokens"]), max(1.0, sums["completions"])
        return {"loss": sums["loss_sum"] / tokens, "reward": sums["reward_sum"] / completions,
                **{f"reward_{r.name}": sums[f"reward_{r.name}_sum"] / completions for r in self.rewards},
                "kl": sums["kl_sum"] / tokens, "clip_ratio": sums["clipped"] / tokens,
                "completion_length": sums["tokens"] / completions}

    def _log(self, loss: float, progress) -> None:
        state, stats = self.state, self.step_statistics
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}", reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.4f}", epoch=state.epoch)
        if state.step % self.trainer.logging_steps == 0 or state.step == 1:
            record = {k: v for k, v in stats.items() if k != "loss"}
            state.steps.append({"step": state.step, "epoch": state.epoch, "loss": loss, **record,
                                "learning_rate": self.scheduler.get_last_lr()[0]})

    # ------------------------------------------------------------ validation

    def _validation_metrics(self) -> dict:
        """Mean rewards of greedy completions of every validation prompt (each worker generates them all)."""
        rows = self.job.validation_rows
        texts = generate(self.model, self.tokenizer, [row["input_ids"] for row in rows], self.greedy,
                         batch_size=self.trainer.eval_batch_size, progress=False, stop_token_ids=self.stop_token_ids)
        scores = self._score(texts, [row["row"] for row in rows])
        return {"reward": scores["total"].mean().item(), **{f"reward_{r.name}": scores[r.name].mean().item() for r in self.rewards}}


run_grpo = GRPORecipe.run  # the worker function
