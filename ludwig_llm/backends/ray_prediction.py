"""Batch prediction and teacher-forced scoring on a pool of Ray Data actors.

The driver renders and tokenizes the prompts with the local code and sends only token ids through Ray
Data `map_batches` to a pool of actors, each holding one copy of the model and running the local
prediction code (`ludwig_llm.inference.predict`) on its batches. The driver never loads the model. A row
index travels with every row, and the result is sorted by it, so predictions come back in input order.
"""

from __future__ import annotations

import os
from typing import List, Optional

import pandas as pd
import ray.data

from ludwig_llm.backends.ray_cluster import actor_resources, check_cluster_resources, connect, quiet_ray_logs
from ludwig_llm.inference.predict import combine_teacher_forced, predict_from_ids, scored_tokens, teacher_forced_statistics
from ludwig_llm.models.bundle import load_model_directory

ROW_COLUMN = "__ludwig_llm_row__"
IDS_COLUMN = "__ludwig_llm_prompt_ids__"
LABELS_COLUMN = "__ludwig_llm_labels__"
TOKENS_COLUMN = "tokens"


def _blocks(columns: dict, batch_size: int) -> List[pd.DataFrame]:
    """One block per batch: every actor call gets exactly `batch_size` rows (the last fewer)."""
    count = len(next(iter(columns.values())))
    return [pd.DataFrame({ROW_COLUMN: range(start, min(start + batch_size, count)),
                          **{name: values[start:start + batch_size] for name, values in columns.items()}})
            for start in range(0, count, batch_size)]


def _map_on_actors(options, address: Optional[str], actor_class, columns: dict, model_directory: str,
                   batch_size: Optional[int]) -> pd.DataFrame:
    connect(address)
    check_cluster_resources("batch prediction", options.num_actors, actor_resources(options),
                            settings="backend.processor (num_actors, num_cpus_per_actor, num_gpus_per_actor)")
    remote_args = {"num_cpus": options.num_cpus_per_actor}
    if options.num_gpus_per_actor:
        remote_args["num_gpus"] = options.num_gpus_per_actor
    return ray.data.from_pandas(_blocks(columns, options.batch_size)).map_batches(
        actor_class,
        batch_size=options.batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=options.num_actors),
        fn_constructor_kwargs={"model_directory": os.path.abspath(model_directory), "batch_size": batch_size},
        **remote_args,
    ).to_pandas()


def predict_on_actors(options, address: Optional[str], model_directory: str, prompt_ids: List[List[int]],
                      batch_size: Optional[int]) -> pd.DataFrame:
    """Predictions for tokenized prompts; one row per prompt, in order."""
    frame = _map_on_actors(options, address, PredictionActor, {IDS_COLUMN: [list(ids) for ids in prompt_ids]},
                           model_directory, batch_size)
    if len(frame) != len(prompt_ids):
        raise RuntimeError(f"Ray Data returned {len(frame)} predictions for {len(prompt_ids)} rows.")
    return frame.sort_values(ROW_COLUMN, kind="stable").drop(columns=[ROW_COLUMN]).reset_index(drop=True)


def teacher_forced_on_actors(options, address: Optional[str], model_directory: str, rows: List[dict],
                             batch_size: Optional[int]) -> dict:
    """Loss, perplexity and next-token accuracy of encoded `rows`: each actor scores its batches, weighted here by their tokens."""
    columns = {IDS_COLUMN: [list(row["input_ids"]) for row in rows], LABELS_COLUMN: [list(row["labels"]) for row in rows]}
    frame = _map_on_actors(options, address, TeacherForcingActor, columns, model_directory, batch_size)
    return combine_teacher_forced(frame.to_dict("records"))


class _ModelActor:
    """One model replica in the Ray Data actor pool."""

    def __init__(self, model_directory: str, batch_size: Optional[int] = None):
        quiet_ray_logs()
        self.config, self.manifest, self.built = load_model_directory(model_directory)
        self.batch_size = batch_size or self.config.trainer.eval_batch_size


class PredictionActor(_ModelActor):
    """Predicts a batch of tokenized prompts with the local code."""

    def __call__(self, batch):
        prompt_ids = [[int(token) for token in ids] for ids in batch[IDS_COLUMN]]
        predictions = predict_from_ids(self.config, self.manifest, self.built, prompt_ids, self.batch_size, progress=False)
        predictions.insert(0, ROW_COLUMN, batch[ROW_COLUMN].to_numpy())
        return predictions


class TeacherForcingActor(_ModelActor):
    """Scores a batch of encoded prompt + target rows; one result row with the batch's scored token count."""

    def __call__(self, batch):
        rows = [{"input_ids": [int(t) for t in ids], "labels": [int(t) for t in labels]}
                for ids, labels in zip(batch[IDS_COLUMN], batch[LABELS_COLUMN])]
        statistics = teacher_forced_statistics(self.built, rows, self.batch_size)
        return pd.DataFrame([{**statistics, TOKENS_COLUMN: scored_tokens(rows)}])
