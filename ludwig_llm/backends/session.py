"""Where a training function runs: one process, or one of N Ray Train workers.

The fine-tuning loop talks only to a WorkerSession, so the same function runs unchanged in
both places. The session decides where checkpoints live and how metrics are reported.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Optional

from ludwig_llm.results import CHECKPOINTS_DIR, MODEL_DIR

CHECKPOINT_PREFIX = "step-"


class WorkerSession:
    """One process's view of a (possibly distributed) training run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self):
        import torch

        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def report(self, metrics: dict) -> None:
        """Metrics of one evaluation, for the backend's own tracking."""

    def save_checkpoint(self, write: Callable[[str], None], step: int, metrics: dict) -> None:
        raise NotImplementedError

    def latest_checkpoint(self) -> Optional[str]:
        raise NotImplementedError

    def save_model(self, write: Callable[[str], None], metrics: dict) -> None:
        raise NotImplementedError


class LocalSession(WorkerSession):
    """A single process writing straight into the run directory."""

    def __init__(self, run_directory: str, checkpoints_to_keep: int, resume_from: Optional[str] = None):
        self.run_directory = run_directory
        self.checkpoints_to_keep = checkpoints_to_keep
        self.resume_from = resume_from

    def save_checkpoint(self, write, step, metrics) -> None:
        root = os.path.join(self.run_directory, CHECKPOINTS_DIR)
        final = os.path.join(root, f"{CHECKPOINT_PREFIX}{step:08d}")
        write_directory_atomically(final, write)
        for old in list_checkpoints(root)[: -self.checkpoints_to_keep]:
            shutil.rmtree(old, ignore_errors=True)

    def latest_checkpoint(self) -> Optional[str]:
        return self.resume_from

    def save_model(self, write, metrics) -> None:
        write_directory_atomically(os.path.join(self.run_directory, MODEL_DIR), write)


def write_directory_atomically(final: str, write: Callable[[str], None]) -> None:
    """Write into a temporary sibling, then rename: a crash never leaves a half-written directory."""
    staging = f"{final}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    write(staging)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(staging, final)


def list_checkpoints(root: str) -> list:
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if n.startswith(CHECKPOINT_PREFIX) and not n.endswith(".partial"))
    return [os.path.join(root, n) for n in names]


def latest_checkpoint_in(run_directory: str) -> Optional[str]:
    checkpoints = list_checkpoints(os.path.join(run_directory, CHECKPOINTS_DIR))
    return checkpoints[-1] if checkpoints else None
