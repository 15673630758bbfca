"""What every backend offers: training, and prediction and evaluation of a saved model.

Prediction is the same wherever the model runs: the prompts are rendered and tokenized here, with the
local code, and only the model's work (`predict_from_ids`, `teacher_forced_statistics`) is the backend's.
"""

from __future__ import annotations

from typing import Optional, Tuple

from ludwig_llm.inference.predict import (
    evaluation_statistics,
    model_inputs,
    needs_generation,
    resolve_batch_size,
    targets_of,
    teacher_forcing_rows,
)
from ludwig_llm.models.bundle import SavedModel, open_model_directory


class Backend:
    lazy_model = False  # True when the model runs elsewhere: this process then loads only the tokenizer

    def __init__(self, config):
        self.config = config

    # ------------------------------------------------------------------ what a backend implements

    def run_workers(self, worker, job, run_directory: str, resume_from: Optional[str]) -> dict:
        """Run `worker(job, session)` where training runs, with a session writing into `run_directory`
        (resuming from the checkpoint `resume_from`); returns the statistics of the main worker."""
        raise NotImplementedError

    def predict_from_ids(self, model: SavedModel, prompt_ids, batch_size: int):
        """A DataFrame of predictions for tokenized prompts, one row per prompt, in order."""
        raise NotImplementedError

    def teacher_forced_statistics(self, model: SavedModel, rows, batch_size: int) -> dict:
        """Loss, perplexity and next-token accuracy of the targets in encoded `rows`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the same for every backend

    def open_model(self, directory: str) -> SavedModel:
        return open_model_directory(directory, lazy=self.lazy_model)

    def predict(self, model: SavedModel, df, batch_size: Optional[int] = None):
        """A DataFrame of predictions, one row per input row, in the input's order."""
        batch_size = resolve_batch_size(batch_size, model.config)
        _, prompt_ids = model_inputs(model.config, model.built.tokenizer, df, model.retriever)
        return self.predict_from_ids(model, prompt_ids, batch_size)

    def evaluate(self, model: SavedModel, df, batch_size: Optional[int] = None) -> Tuple[object, dict]:
        """(predictions, statistics) against the targets in the output feature's column. Predictions are None
        for a text output whose `generation_metrics` is off, since then nothing is generated.

        Targets are checked before any model work.
        """
        config = model.config
        targets = targets_of(config, df, manifest=model.manifest)
        batch_size = resolve_batch_size(batch_size, config)
        prompts, prompt_ids = model_inputs(config, model.built.tokenizer, df, model.retriever)
        predictions = self.predict_from_ids(model, prompt_ids, batch_size) if needs_generation(config) else None
        teacher_forced = None
        if config.output_feature.type == "text":
            rows = teacher_forcing_rows(config, model.built.tokenizer, prompts, targets)
            teacher_forced = self.teacher_forced_statistics(model, rows, batch_size)
        return predictions, evaluation_statistics(config, model.manifest, targets, predictions, teacher_forced)
