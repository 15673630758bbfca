"""The local backend: training and prediction in this process."""

from __future__ import annotations

from typing import Optional

from ludwig_llm.backends.session import LocalSession


class LocalBackend:
    def __init__(self, config):
        self.config = config

    def run_finetune(self, job, run_directory: str, resume_from: Optional[str]) -> dict:
        from ludwig_llm.trainers.finetune import run_finetune

        session = LocalSession(run_directory, self.config.trainer.checkpoints_to_keep, resume_from)
        return run_finetune(job, session)
