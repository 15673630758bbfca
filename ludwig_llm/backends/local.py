"""The local backend: training and prediction in this process."""

from __future__ import annotations

from typing import Optional

from ludwig_llm.backends.base import Backend
from ludwig_llm.inference.predict import predict_from_ids, teacher_forced_statistics
from ludwig_llm.trainers.session import LocalSession


class LocalBackend(Backend):
    def run_workers(self, worker, job, run_directory: str, resume_from: Optional[str]) -> dict:
        return worker(job, LocalSession(run_directory, self.config.trainer.checkpoints_to_keep, resume_from))

    def predict_from_ids(self, model, prompt_ids, batch_size: int):
        return predict_from_ids(model.config, model.manifest, model.built, prompt_ids, batch_size)

    def teacher_forced_statistics(self, model, rows, batch_size: int) -> dict:
        return teacher_forced_statistics(model.built, rows, batch_size)
