"""Where a training function runs: one process, or one of N Ray Train workers.

The fine-tuning loop talks only to a WorkerSession, so the same function runs unchanged in
both places. The session decides where checkpoints live and how metrics are reported.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.distributed as dist

from ludwig_llm.results import (CHECKPOINTS_DIR, MODEL_DIR, RUN_CHECKPOINTED, checkpoint_kept, checkpoint_name, mark_run_state,
                                model_kept, prune_checkpoints, write_directory_atomically)


def sums_over_workers(sums: dict, session: "WorkerSession", device) -> dict:
    """Each value summed over every worker of the run (one collective call for the whole dict); as is with one worker."""
    if session.world_size == 1:
        return sums
    tensor = torch.tensor([sums[k] for k in sums], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(sums, tensor.tolist()))


def step_loss_over_workers(loss_sum: float, session: "WorkerSession", device) -> float:
    """A step's token loss: each worker holds world_size x its tokens' share of it, so the mean over workers. Collective."""
    return sums_over_workers({"loss": loss_sum}, session, device)["loss"] / session.world_size


class WorkerSession:
    """One process's view of a (possibly distributed) training run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self):
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
        write_directory_atomically(os.path.join(root, checkpoint_name(step)), write, kept=checkpoint_kept(root))
        prune_checkpoints(root, self.checkpoints_to_keep)
        mark_run_state(self.run_directory, RUN_CHECKPOINTED, checkpoint=checkpoint_name(step))

    def latest_checkpoint(self) -> Optional[str]:
        return self.resume_from

    def save_model(self, write, metrics) -> None:
        write_directory_atomically(os.path.join(self.run_directory, MODEL_DIR), write, kept=model_kept(self.run_directory))
