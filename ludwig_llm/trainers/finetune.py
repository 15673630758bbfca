"""The `finetune` trainer: a supervised fine-tuning recipe you can read top to bottom.

    setup   model (+ adapter), checkpoint restore, strategy, optimizer, learning-rate schedule
    train   for each optimizer step: for each of its micro-batches, forward and backward; then step,
            log, evaluate (early stopping), checkpoint
    finish  choose the final weights (the best validation step's, or the last) and save the model

A loop of our own rather than transformers.Trainer: it runs unchanged in one process or in every
Ray Train worker (all it needs is a WorkerSession), resumes from an exact optimizer step, and
batches by length, which the benchmark in benchmarks/train_throughput.py measures against Trainer.
Every strategy call marked collective in trainers/strategies.py is made by every worker in the same
order: the loop's control flow depends only on data every worker shares.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from peft.tuners.adalora import AdaLoraModel
from tqdm.auto import tqdm
from transformers.integrations.neftune import activate_neftune

from ludwig_llm.data.packing import PackingCollator, first_fit_decreasing
from ludwig_llm.data.retrieval import load_retriever
from ludwig_llm.data.tokenize import PaddingCollator
from ludwig_llm.inference.batch_size_search import longest_first, search_batch_size
from ludwig_llm.inference.teacher_forcing import teacher_forced_metrics
from ludwig_llm.models.adapters import initialize_from_training_rows
from ludwig_llm.models.training_speed import eager_is_faster, training_kernels
from ludwig_llm.models.build import build_llm
from ludwig_llm.models.bundle import save_model_directory
from ludwig_llm.schema import load_config
from ludwig_llm.trainers.batches import (
    global_batches,
    optimizer_steps,
    scores_first_label,
    seed_everything,
    steps_per_epoch,
    target_tokens,
    worker_share,
)
from ludwig_llm.trainers.checkpoint import BEST_WEIGHTS_FILE, LoopState, load_weights, read_checkpoint, save_checkpoint, save_weights
from ludwig_llm.trainers.label_loss import TrainingLoss
from ludwig_llm.trainers.optim import build_optimizer, build_scheduler
from ludwig_llm.trainers.session import step_loss_over_workers
from ludwig_llm.trainers.strategies import copy_trainable_state, create_strategy

LOWER_IS_BETTER = {"loss": True, "perplexity": True, "next_token_accuracy": False}


@dataclass
class FineTuneJob:
    """Everything a worker needs; plain data so it can be shipped to Ray workers."""

    config_dict: dict
    base_model_path: str
    train_rows: List[dict]
    validation_rows: List[dict]
    pad_token_id: int
    save_model: bool = True
    labels: Optional[List[str]] = None
    retriever_directory: Optional[str] = None


class FineTuneRecipe:
    """One worker's fine-tuning run: `setup`, `train`, `finish`, in that order."""

    lower_is_better = LOWER_IS_BETTER  # per validation metric; a recipe with other metrics replaces it

    def __init__(self, job: FineTuneJob, session, best_weights_path: str):
        self.job, self.session = job, session
        self.config = load_config(job.config_dict)
        self.trainer = self.config.trainer
        self.device = session.device()
        self.best_weights_path = best_weights_path
        self.state = LoopState()
        self.stopped_early = False

    @classmethod
    def run(cls, job: FineTuneJob, session) -> dict:
        """A worker's whole run with this recipe: setup, train, finish; returns the training statistics."""
        # The best weights so far wait in a temporary directory, removed however training ends.
        with tempfile.TemporaryDirectory(prefix="ludwig_llm_best_") as best_directory:
            recipe = cls(job, session, best_weights_path=os.path.join(best_directory, BEST_WEIGHTS_FILE))
            recipe.setup()
            recipe.train()
            return recipe.finish()

    # ================================================================== setup

    def setup(self) -> None:
        job, trainer = self.job, self.trainer
        seed_everything(trainer.seed)
        searching = "auto" in (trainer.batch_size, trainer.eval_batch_size)
        # With `auto` the steps are known after the search; a check makes AdaLoRA give its total_step then.
        self.total_steps = None if searching else self._total_steps()

        self.built = build_llm(self.config, for_training=True, base_model_path=job.base_model_path,
                               total_steps=self.total_steps, device=self.device, calibration_rows=job.train_rows)
        self.model = self.built.model
        self.add_modules()
        if self.config.model_parameters.neftune_noise_alpha > 0:
            activate_neftune(self.model, self.config.model_parameters.neftune_noise_alpha)

        checkpoint = self._restore_checkpoint()  # into the plain model, before a strategy shards it

        self.strategy = create_strategy(self.config, self.session, self.device)
        optimizer = self.strategy.prepare(self.model, lambda model: build_optimizer(model, trainer), quantized=self.built.quantized)
        self.autocast, self.scaler = self.strategy.autocast()
        self.collate = PaddingCollator(job.pad_token_id, padding_side="right")
        self.collate_packs = PackingCollator(job.pad_token_id)
        self.loss = TrainingLoss(self.model)
        self.batch_size_search = self._search_batch_sizes() if searching else None
        self.total_steps = self._total_steps()
        self.scheduler = build_scheduler(optimizer, trainer, self.total_steps)
        if checkpoint:
            self.strategy.load_optimizer_state(checkpoint.optimizer)
            self.scheduler.load_state_dict(checkpoint.scheduler)

        self.lengths = [len(row["input_ids"]) for row in job.train_rows]
        first_label_scored = scores_first_label(self.model)
        self.row_targets = [target_tokens(row["labels"], first_label_scored) for row in job.train_rows]

    def add_modules(self) -> None:
        """The data-driven adapter init (EVA), and trainable modules a recipe adds to the model (a classification head),
        before checkpoints and optimizer see the model."""
        batch_size = self.trainer.batch_size if isinstance(self.trainer.batch_size, int) else 4  # `auto` is searched later
        initialize_from_training_rows(self.model, self.job.train_rows, self.job.pad_token_id, batch_size, self.device)

    def _total_steps(self) -> int:
        trainer = self.trainer
        return trainer.max_steps or trainer.epochs * steps_per_epoch(len(self.job.train_rows), trainer.batch_size,
                                                                      trainer.gradient_accumulation_steps)

    def _search_batch_sizes(self) -> dict:
        """Resolve `auto` batch sizes on this model and data; the chosen numbers replace `auto` in the config
        (so the saved model's config has them) and the trials go to the training statistics."""
        trainer, report = self.trainer, {}
        rows = self.job.train_rows
        order = longest_first([len(row["input_ids"]) for row in rows])

        def inputs(size: int, source: List[dict], ranked: List[int]) -> dict:
            return {k: v.to(self.device) for k, v in self.collate([source[i] for i in ranked[:size]]).items()}

        def train_pass(size: int) -> None:
            with self.autocast:
                loss = self.strategy.train_model(**inputs(size, rows, order)).loss
            loss.backward()
            self.strategy.zero_grad()

        if trainer.batch_size == "auto":
            trainer.batch_size, report["trials"] = search_batch_size(train_pass, len(rows), self.device)
            report["batch_size"] = trainer.batch_size
        if trainer.eval_batch_size == "auto":
            eval_rows = self.job.validation_rows or rows
            eval_order = longest_first([len(row["input_ids"]) for row in eval_rows])

            def eval_pass(size: int) -> None:
                with torch.no_grad(), self.autocast:
                    self.strategy.train_model(**inputs(size, eval_rows, eval_order))

            trainer.eval_batch_size, report["eval_trials"] = search_batch_size(eval_pass, len(eval_rows), self.device)
            report["eval_batch_size"] = trainer.eval_batch_size
        seed_everything(trainer.seed)  # the search drew dropout masks: training starts from the seed as without it
        if self.session.is_main:
            print(f"batch size search: batch_size {trainer.batch_size}, eval_batch_size {trainer.eval_batch_size}")
        return report

    def _restore_checkpoint(self):
        """Load the latest checkpoint's weights, loop state and random generators, if the session has one."""
        directory = self.session.latest_checkpoint()
        if not directory:
            return None
        checkpoint = read_checkpoint(directory)
        copy_trainable_state(self.model, checkpoint.weights)
        self.state = checkpoint.state
        # The best weights so far travel in the checkpoint: the interrupted run's temporary copy is gone.
        if os.path.isfile(os.path.join(directory, BEST_WEIGHTS_FILE)):
            shutil.copyfile(os.path.join(directory, BEST_WEIGHTS_FILE), self.best_weights_path)
        return checkpoint

    # ================================================================== train

    def train(self) -> None:
        state, trainer = self.state, self.trainer
        self.started = time.time()
        sequences, longest = self.training_shape()
        eager = eager_is_faster(self.model, self.device, self.strategy.precision.compute_dtype, sequences, longest)
        # the progress bar is closed on an error too, so the error message starts on its own line
        with training_kernels(self.model, use_eager=eager, autocast=isinstance(self.autocast, torch.autocast)), \
                tqdm(total=self.total_steps, initial=state.step, desc="training", unit="step", disable=not self.session.is_main) as progress:
            self.model.train()
            while state.step < self.total_steps and not self.stopped_early:
                epoch_batches = global_batches(self.lengths, trainer.batch_size, trainer.seed, state.epoch, trainer.group_by_length)
                steps_left = optimizer_steps(epoch_batches[state.micro_batches_done_in_epoch :], trainer.gradient_accumulation_steps)
                for micro_batches in steps_left[: self.total_steps - state.step]:
                    loss = self.train_step(micro_batches)
                    self._log(loss, progress)
                    state.micro_batches_done_in_epoch += len(micro_batches)
                    end_of_epoch = state.micro_batches_done_in_epoch == len(epoch_batches)
                    if end_of_epoch:
                        state.epoch, state.micro_batches_done_in_epoch = state.epoch + 1, 0
                    if self._evaluation_due(end_of_epoch):
                        self.stopped_early = self._evaluate()
                    if self._checkpoint_due(end_of_epoch):
                        self._save_checkpoint()
                    if self.stopped_early:
                        break

    def training_shape(self) -> Tuple[int, int]:
        """The sequences of a micro-batch's forward pass, and the longest (the attention kernel's choice needs them)."""
        longest = max(self.lengths, default=0)
        if self.trainer.packing:
            longest = max(longest, self.config.preprocessing.global_max_sequence_length or 0)
        return self.trainer.batch_size, longest

    def train_step(self, micro_batches: List[List[int]]) -> float:
        """One optimizer step over its micro-batches (global row indices); returns the step's loss.

        The loss is normalised by target tokens: each micro-batch's summed token loss is divided by the
        target tokens of the whole step (every micro-batch, every worker), so the step's gradient is that
        of one batch of all its rows, however their lengths fall into micro-batches. Every worker knows
        every row's labels, so it counts them without communicating. Strategies average gradients over
        workers, hence the division by tokens per worker.
        """
        session, strategy = self.session, self.strategy
        tokens = max(1, sum(self.row_targets[i] for batch in micro_batches for i in batch))
        loss_sum = 0.0
        with _adalora_penalty_once_per_step(self.model, len(micro_batches)):
            for index, batch in enumerate(micro_batches):
                inputs, share = self._micro_batch_inputs(batch)
                with strategy.micro_batch(index == len(micro_batches) - 1), self.autocast:
                    loss = self.loss(strategy.train_model, inputs, tokens / session.world_size)
                loss = loss if share else loss * 0.0
                strategy.backward(loss, self.scaler)
                loss_sum += loss.item()
        strategy.optimizer_step(self.scheduler, self.trainer.max_grad_norm, self.scaler)
        _adalora_update(self.model, self.state.step)  # reads this step's gradients
        strategy.zero_grad()
        self.state.step += 1
        return step_loss_over_workers(loss_sum, session, self.device)

    def _micro_batch_inputs(self, batch: List[int]):
        """This worker's tensors for one micro-batch (global row indices), and whether it has rows of its own.

        With packing, the whole micro-batch's rows are packed (the same packs on every worker), then the packs are
        shared among workers. A worker left without rows still runs a (zero-weighted) pass on the first: every
        worker joins the same collectives."""
        rows, session = self.job.train_rows, self.session
        if not self.trainer.packing:
            share = worker_share(batch, session.rank, session.world_size)
            tensors = self.collate([rows[i] for i in share or batch[:1]])
        else:
            lengths = [self.lengths[i] for i in batch]
            capacity = self.config.preprocessing.global_max_sequence_length or max(lengths)
            packs = [[batch[i] for i in pack] for pack in first_fit_decreasing(lengths, capacity, self.trainer.packing_max_sequences_per_pack)]
            share = worker_share(packs, session.rank, session.world_size)
            tensors = self.collate_packs([[rows[i] for i in pack] for pack in share or packs[:1]])
            tensors["use_cache"] = False  # see data/packing.py: a cache would turn the packed-sequence mask off
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in tensors.items()}, bool(share)

    def _log(self, loss: float, progress) -> None:
        state = self.state
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}", epoch=state.epoch)
        if state.step % self.trainer.logging_steps == 0 or state.step == 1:
            state.steps.append({"step": state.step, "epoch": state.epoch, "loss": loss,
                                "learning_rate": self.scheduler.get_last_lr()[0]})

    def _evaluation_due(self, end_of_epoch: bool) -> bool:
        eval_steps = self.trainer.eval_steps
        return bool(self.job.validation_rows) and (self.state.step % eval_steps == 0 if eval_steps else end_of_epoch)

    def _checkpoint_due(self, end_of_epoch: bool) -> bool:
        checkpoint_steps = self.trainer.checkpoint_steps
        due = self.state.step % checkpoint_steps == 0 if checkpoint_steps else end_of_epoch
        return due or self.stopped_early or self.state.step >= self.total_steps

    def _evaluate(self) -> bool:
        """Evaluate, record, keep the best weights; True when early stopping says stop."""
        trainer, state = self.trainer, self.state
        metrics = self._validation_metrics()
        self.model.train()
        state.evaluations.append({"step": state.step, "epoch": state.epoch, "validation": metrics})
        self.session.report({"step": state.step, **{f"validation_{k}": v for k, v in metrics.items()}})
        value = metrics[trainer.validation_metric]
        lower_is_better = self.lower_is_better[trainer.validation_metric]
        improved = state.best_metric is None or (value < state.best_metric if lower_is_better else value > state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evaluations_without_improvement = value, state.step, 0
            weights = self.strategy.trainable_state()  # collective
            if self.session.is_main:
                save_weights(weights, self.best_weights_path)
        else:
            state.evaluations_without_improvement += 1
        return trainer.early_stop > 0 and state.evaluations_without_improvement >= trainer.early_stop

    def _validation_metrics(self) -> dict:
        return teacher_forced_metrics(self.model, self.job.validation_rows, batch_size=self.trainer.eval_batch_size,
                                      collate=self.collate, device=self.device, autocast=self.autocast,
                                      rank=self.session.rank, world_size=self.session.world_size)

    def _save_checkpoint(self) -> None:
        weights, optimizer_state = self.strategy.trainable_state(), self.strategy.optimizer_state()  # collective

        def write(directory: str) -> None:
            save_checkpoint(directory, weights, optimizer_state, self.scheduler, self.state)
            if os.path.isfile(self.best_weights_path):
                shutil.copyfile(self.best_weights_path, os.path.join(directory, BEST_WEIGHTS_FILE))

        self.session.save_checkpoint(write, self.state.step, {"step": self.state.step})

    # ================================================================== finish

    def finish(self) -> dict:
        state = self.state
        statistics = {
            "steps": state.steps,
            "evaluations": state.evaluations,
            "best": {"step": state.best_step, self.trainer.validation_metric: state.best_metric, "metric": self.trainer.validation_metric},
            "total_steps": state.step,
            "epochs_completed": state.epoch,
            "train_seconds": time.time() - self.started,
        }
        if self.batch_size_search is not None:
            statistics["batch_size_search"] = self.batch_size_search
        if self.job.save_model:
            self._save_model(self._final_weights())
        return statistics

    def _final_weights(self) -> Optional[dict]:
        """The trainable weights to save: the best validation step's, or the last. None keeps the weights the
        model has; a sharded model's are gathered by every worker (collective) for the main one."""
        state = self.state
        final_weights = self.strategy.trainable_state() if self.strategy.sharded else None
        if not (self.job.validation_rows and state.best_step is not None and state.best_step != state.step):
            return final_weights
        if os.path.isfile(self.best_weights_path):
            return load_weights(self.best_weights_path) if self.session.is_main else {}
        if self.session.is_main:  # a checkpoint written before best weights were kept in checkpoints
            print(f"the weights of the best step ({state.best_step}) were not saved; keeping those of step {state.step}.")
        return final_weights

    def _save_model(self, weights: Optional[dict]) -> None:
        job, config, built = self.job, self.config, self.built
        sharded = self.strategy.sharded
        model_type = "adapter" if config.adapter is not None else "full"
        merge = bool(config.adapter and config.adapter.postprocessor.merge_adapter_into_base_model)
        retriever = None
        if job.retriever_directory and self.session.is_main:
            retriever = load_retriever(job.retriever_directory, config.prompt.retrieval)

        def write(directory: str) -> None:  # runs on the main worker only
            model = built.model
            if sharded:  # no worker holds the trained model whole: load the gathered weights into a fresh copy
                model = build_llm(config, for_training=True, base_model_path=job.base_model_path,
                                  total_steps=self.total_steps, device=self.device, calibration_rows=job.train_rows).model
            if weights is not None:
                copy_trainable_state(model, weights)
            model.eval()
            save_model_directory(directory, config=config, model=model, tokenizer=built.tokenizer,
                                 base_model_path=job.base_model_path, weights=model_type, labels=job.labels,
                                 retriever=retriever, merge=merge, quantized=built.quantized)

        self.session.save_model(write, {"step": self.state.step})


def _adalora_update(model, step: int) -> None:
    # AdaLoRA reallocates ranks between optimizer steps; other adapters have no such hook.
    if isinstance(getattr(model, "base_model", None), AdaLoraModel):
        model.base_model.update_and_allocate(step)


@contextlib.contextmanager
def _adalora_penalty_once_per_step(model, micro_batches: int):
    """peft adds AdaLoRA's orthogonality penalty to the loss of every forward pass; a step sums `micro_batches`
    of them (and workers average theirs), so each carries its share, and the step's penalty weighs as configured."""
    base = getattr(model, "base_model", None)
    if not isinstance(base, AdaLoraModel) or micro_batches == 1:
        yield
        return
    config = base.peft_config[base.trainable_adapter_name]
    weight = config.orth_reg_weight
    config.orth_reg_weight = weight / micro_batches
    try:
        yield
    finally:
        config.orth_reg_weight = weight


run_finetune = FineTuneRecipe.run  # the worker function: train, evaluate, checkpoint and save
