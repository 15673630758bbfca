"""The `dpo`, `orpo` and `kto` trainers' driver side: encode the preference rows, run the recipe on the workers."""

from __future__ import annotations

from ludwig_llm.errors import UserError
from ludwig_llm.trainers.finetune_launch import launch
from ludwig_llm.trainers.preference import run_preference
from ludwig_llm.trainers.preference_data import encode_preference_rows
from ludwig_llm.trainers.run import TrainingRun


def train(run: TrainingRun) -> dict:
    data = run.data
    if data.splits.train is None or len(data.splits.train) == 0:
        raise UserError("the training split is empty: give more rows, or change preprocessing.split.")
    train_rows = encode_preference_rows(data.splits.train, "training", run.tokenizer, run.config, data.retriever)
    validation_rows = encode_preference_rows(data.splits.validation, "validation", run.tokenizer, run.config, data.retriever)
    return launch(run, run_preference, train_rows, validation_rows)
