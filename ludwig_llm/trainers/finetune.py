"""The `finetune` trainer: a supervised fine-tuning loop you can read top to bottom.

A loop of our own rather than transformers.Trainer: it runs unchanged in one process or in every
Ray Train worker (all it needs is a WorkerSession), resumes from an exact optimizer step, and
batches by length, which the benchmark in benchmarks/train_throughput.py measures against Trainer.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from typing import List, Optional

from ludwig_llm.trainers.checkpoint import BEST_WEIGHTS_FILE, LoopState, load_weights, read_checkpoint, save_checkpoint, save_weights

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


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def global_batches(lengths: List[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> List[List[int]]:
    """The row indices of each global batch of one epoch: the same on every worker, different each epoch."""
    import torch

    if group_by_length:
        from ludwig_llm.data.tokenize import length_grouped_sampler

        sampler = length_grouped_sampler(lengths, batch_size, seed=seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def worker_share(batch: List[int], rank: int, world_size: int) -> List[int]:
    return batch[rank::world_size]


def steps_per_epoch(num_rows: int, trainer, world_size: int) -> int:
    return math.ceil(math.ceil(num_rows / trainer.batch_size) / trainer.gradient_accumulation_steps)


def run_finetune(job: FineTuneJob, session) -> dict:
    """Train, evaluate, checkpoint and save; returns the training statistics."""
    from tqdm.auto import tqdm

    from ludwig_llm.data.tokenize import PaddingCollator
    from ludwig_llm.inference.teacher_forcing import teacher_forced_metrics
    from ludwig_llm.models.build import build_llm
    from ludwig_llm.schema import load_config

    config = load_config(job.config_dict)
    trainer = config.trainer
    seed_everything(trainer.seed)
    device = session.device()

    steps_in_epoch = steps_per_epoch(len(job.train_rows), trainer, session.world_size)
    total_steps = trainer.max_steps or trainer.epochs * steps_in_epoch
    epochs = math.ceil(total_steps / steps_in_epoch)
    if config.adapter is not None and config.adapter.type == "adalora" and config.adapter.total_step is None:
        config.adapter.total_step = total_steps

    built = build_llm(config, for_training=True, base_model_path=job.base_model_path)
    model = built.model
    if config.model_parameters.neftune_noise_alpha > 0:
        from transformers.integrations.neftune import activate_neftune

        activate_neftune(model, config.model_parameters.neftune_noise_alpha)

    import shutil
    import tempfile

    from ludwig_llm.trainers.optim import build_optimizer, build_scheduler
    from ludwig_llm.trainers.strategies import copy_trainable_state, create_strategy

    best_directory = tempfile.mkdtemp(prefix="ludwig_llm_best_")
    best_weights_path = os.path.join(best_directory, BEST_WEIGHTS_FILE)
    state = LoopState()
    checkpoint_directory = session.latest_checkpoint()
    checkpoint = read_checkpoint(checkpoint_directory) if checkpoint_directory else None
    if checkpoint:  # into the plain model, before any strategy shards it
        copy_trainable_state(model, checkpoint.weights)
        state = checkpoint.state
        # The best weights so far travel in the checkpoint: the interrupted run's temporary copy is gone.
        if os.path.isfile(os.path.join(checkpoint_directory, BEST_WEIGHTS_FILE)):
            shutil.copyfile(os.path.join(checkpoint_directory, BEST_WEIGHTS_FILE), best_weights_path)

    strategy = create_strategy(config, session, device)
    optimizer = strategy.prepare(model, lambda m: build_optimizer(m, trainer), quantized=built.quantized)
    scheduler = build_scheduler(optimizer, trainer, total_steps)
    if checkpoint:
        strategy.load_optimizer_state(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
        del checkpoint

    collate = PaddingCollator(job.pad_token_id, padding_side="right")
    lengths = [len(row["input_ids"]) for row in job.train_rows]
    autocast, scaler = strategy.autocast(trainer.precision)
    accumulation = trainer.gradient_accumulation_steps
    lower_is_better = LOWER_IS_BETTER[trainer.validation_metric]

    def evaluate() -> dict:
        return teacher_forced_metrics(model, job.validation_rows, batch_size=trainer.eval_batch_size, collate=collate,
                                      device=device, autocast=autocast, rank=session.rank, world_size=session.world_size)

    def checkpoint_now() -> None:
        weights, optimizer_state = strategy.trainable_state(), strategy.optimizer_state()  # every worker gathers

        def write(directory: str) -> None:
            save_checkpoint(directory, weights, optimizer_state, scheduler, state)
            if os.path.isfile(best_weights_path):
                shutil.copyfile(best_weights_path, os.path.join(directory, BEST_WEIGHTS_FILE))

        session.save_checkpoint(write, state.step, {"step": state.step})

    def after_evaluation(metrics: dict) -> bool:
        """Record an evaluation; True when early stopping says stop."""
        state.evaluations.append({"step": state.step, "epoch": state.epoch, "validation": metrics})
        session.report({"step": state.step, **{f"validation_{k}": v for k, v in metrics.items()}})
        value = metrics[trainer.validation_metric]
        improved = state.best_metric is None or (value < state.best_metric if lower_is_better else value > state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evaluations_without_improvement = value, state.step, 0
            weights = strategy.trainable_state()
            if session.is_main:
                save_weights(weights, best_weights_path)
        else:
            state.evaluations_without_improvement += 1
        return trainer.early_stop > 0 and state.evaluations_without_improvement >= trainer.early_stop

    progress = tqdm(total=total_steps, initial=state.step, desc="training", unit="step", disable=not session.is_main)
    started = time.time()
    stop = state.step >= total_steps
    model.train()
    while not stop and state.epoch < epochs:
        batches = global_batches(lengths, trainer.batch_size, trainer.seed, state.epoch, trainer.group_by_length)
        micro_batches = batches[state.micro_batches_done_in_epoch :]
        running_loss, in_accumulation = 0.0, 0
        for micro_index, batch in enumerate(micro_batches):
            share = worker_share(batch, session.rank, session.world_size)
            # Each worker's loss is weighted by its share of the global batch, so averaging gradients over
            # workers weighs rows alike when the batch does not split evenly. A worker left without rows
            # still runs the (zero-weighted) pass: every worker must join the same collectives.
            weight = len(share) * session.world_size / len(batch)
            inputs = {k: v.to(device) for k, v in collate([job.train_rows[i] for i in share or batch[:1]]).items()}
            last_of_step = in_accumulation + 1 == accumulation or micro_index + 1 == len(micro_batches)
            with strategy.micro_batch(last_of_step), autocast:
                loss = strategy.train_model(**inputs).loss * (weight / accumulation)
            strategy.backward(loss, scaler)
            running_loss += loss.item()
            in_accumulation += 1
            state.micro_batches_done_in_epoch += 1
            if not last_of_step:
                continue
            strategy.optimizer_step(scheduler, trainer.max_grad_norm, scaler)
            _adalora_update(model, state.step)  # reads this step's gradients
            strategy.zero_grad()
            state.step += 1
            # A partial accumulation at the end of an epoch is rescaled to a full step's weight.
            step_loss = running_loss * accumulation / in_accumulation
            if session.world_size > 1:  # each worker saw its share: log the mean, which is what DDP optimized
                step_loss = _mean_over_workers(step_loss, device)
            running_loss, in_accumulation = 0.0, 0
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}", epoch=state.epoch)
            if state.step % trainer.logging_steps == 0 or state.step == 1:
                state.steps.append({"step": state.step, "epoch": state.epoch, "loss": step_loss,
                                    "learning_rate": scheduler.get_last_lr()[0]})
            end_of_epoch = state.micro_batches_done_in_epoch >= len(batches)
            if end_of_epoch:
                state.epoch += 1
                state.micro_batches_done_in_epoch = 0
            evaluate_now = job.validation_rows and (
                (trainer.eval_steps and state.step % trainer.eval_steps == 0) or (not trainer.eval_steps and end_of_epoch)
            )
            if evaluate_now:
                stop = after_evaluation(evaluate())
                model.train()
            if state.step >= total_steps:
                stop = True
            checkpoint_due = (trainer.checkpoint_steps and state.step % trainer.checkpoint_steps == 0) or (
                not trainer.checkpoint_steps and end_of_epoch
            )
            if checkpoint_due or stop:
                checkpoint_now()
            if stop or end_of_epoch:
                break
    progress.close()

    # None keeps the weights the model has; a sharded model's are gathered by every worker for the main one.
    final_weights = strategy.trainable_state() if strategy.sharded else None
    if job.validation_rows and state.best_step is not None and state.best_step != state.step:
        if os.path.isfile(best_weights_path):
            final_weights = load_weights(best_weights_path) if session.is_main else {}
        elif session.is_main:  # a checkpoint written before best weights were kept in checkpoints
            print(f"the weights of the best step ({state.best_step}) were not saved; keeping those of step {state.step}.")
    statistics = {
        "steps": state.steps,
        "evaluations": state.evaluations,
        "best": {"step": state.best_step, trainer.validation_metric: state.best_metric, "metric": trainer.validation_metric},
        "total_steps": state.step,
        "epochs_completed": state.epoch,
        "train_seconds": time.time() - started,
    }
    if job.save_model:
        _save_final_model(job, config, built, final_weights, strategy.sharded, session, statistics)
    shutil.rmtree(best_directory, ignore_errors=True)
    return statistics


def _mean_over_workers(value: float, device) -> float:
    """The mean of a per-worker number over all workers of the process group."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def _adalora_update(model, step: int) -> None:
    # AdaLoRA reallocates ranks between optimizer steps; other adapters have no such hook.
    base = getattr(model, "base_model", None)
    if hasattr(base, "update_and_allocate"):
        base.update_and_allocate(step)


def _save_final_model(job, config, built, weights: Optional[dict], sharded: bool, session, statistics) -> None:
    from ludwig_llm.models.bundle import save_model_directory
    from ludwig_llm.models.build import build_llm
    from ludwig_llm.trainers.strategies import copy_trainable_state

    model_type = "adapter" if config.adapter is not None else "full"
    merge = bool(config.adapter and config.adapter.postprocessor.merge_adapter_into_base_model)
    retriever = None
    if job.retriever_directory and session.is_main:
        from ludwig_llm.inference.retrieval import load_retriever

        retriever = load_retriever(job.retriever_directory, config.prompt.retrieval)

    def write(directory: str) -> None:  # runs on the main worker only
        model = built.model
        if sharded:  # no worker holds the trained model whole: load the gathered weights into a fresh copy
            model = build_llm(config, for_training=True, base_model_path=job.base_model_path).model
        if weights is not None:
            copy_trainable_state(model, weights)
        model.eval()
        save_model_directory(directory, config=config, model=model, tokenizer=built.tokenizer,
                             base_model_path=job.base_model_path, weights=model_type, labels=job.labels,
                             retriever=retriever, merge=merge, quantized=built.quantized)

    session.save_model(write, {"step": statistics["total_steps"]})
