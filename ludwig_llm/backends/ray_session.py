"""Checkpoints of a Ray Train run: the training workers' session, and their mirror in the run directory.

A trainer's worker function (`run_finetune`) runs unchanged in every Ray Train worker; only the session
differs. `RaySession` takes rank and world size from Ray Train, turns checkpoints and the final
model into Ray Train checkpoints (rank 0 writes the files, every rank reports), and restores the latest
one when Ray Train restarts a failed worker group. On the driver, `CheckpointMirror` (a Ray Train
callback) copies every training checkpoint into `<run>/checkpoints/` as it is reported, so `--resume`
finds it as after a local run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import List, Optional

import pyarrow.fs
import ray
import ray.train
import ray.train.torch
from ray.train import UserCallback

from ludwig_llm.results import (CHECKPOINTS_DIR, RUN_CHECKPOINTED, DiskFullError, checkpoint_name, mark_run_state, prune_checkpoints,
                                write_directory_atomically)
from ludwig_llm.trainers.checkpoint import STATE_FILE  # a training checkpoint has it; the final model does not
from ludwig_llm.trainers.session import WorkerSession

MODEL_CHECKPOINT_NAME = "model"
KIND = "ludwig_llm_kind"  # metric saying what a Ray Train report carries: checkpoint, model or metrics

# Test hook, read on the driver: "RANK:STEP:MARKER". The worker of that rank exits abruptly at its first
# checkpoint at or after STEP, before reporting it (once the earlier checkpoints are committed), unless
# MARKER exists (it creates it first): the failure happens once, and Ray Train's recovery from the previous
# checkpoint can be observed. Never set it outside tests.
FAIL_ONCE_ENV = "LUDWIG_LLM_RAY_FAIL_ONCE"

logger = logging.getLogger(__name__)


def copy_checkpoint(checkpoint, directory: str) -> None:
    """Copy a Ray Train checkpoint's files into `directory`; hard links when on the same local file system."""
    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and os.path.isdir(checkpoint.path):
        shutil.copytree(checkpoint.path, directory, dirs_exist_ok=True, copy_function=_link_or_copy)
    else:
        checkpoint.to_directory(directory)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class CheckpointMirror(UserCallback):
    """Runs in the Ray Train controller, on the driver's node: copies each reported training checkpoint into
    `<run>/checkpoints/step-N` (keeping the newest `keep`), so `--resume` finds it as after a local run."""

    def __init__(self, run_directory: str, keep: int):
        self.run_directory = run_directory
        self.keep = keep

    def after_report(self, run_context, metrics, checkpoint):
        if checkpoint is None or not metrics or metrics[0].get(KIND) != "checkpoint":
            return
        root = os.path.join(self.run_directory, CHECKPOINTS_DIR)
        name = os.path.basename(checkpoint.path.rstrip("/"))
        try:
            write_directory_atomically(os.path.join(root, name), lambda d: copy_checkpoint(checkpoint, d))
            prune_checkpoints(root, self.keep)
            mark_run_state(self.run_directory, RUN_CHECKPOINTED, checkpoint=name)
        except (OSError, DiskFullError) as error:  # training goes on; Ray Train still holds the checkpoint in <run>/ray
            logger.warning("could not copy checkpoint %s into %s: %s", checkpoint.path, root, error)


def model_checkpoint(result):
    """The final model's checkpoint among those a finished Ray Train run kept, or None."""
    for checkpoint, metrics in reversed(result.best_checkpoints or []):
        if metrics.get(KIND) == "model":
            return checkpoint
    return None


class RaySession(WorkerSession):
    """One Ray Train worker's view of the run: checkpoints and the final model become Ray Train checkpoints.

    Every method that reports is called by every rank at the same point of the loop (Ray Train's report is
    a barrier); only rank 0 writes files.
    """

    def __init__(self, resume_from: Optional[str] = None, fail_once: Optional[str] = None):
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.resume_from = resume_from
        self.fail_once = fail_once
        self.restored_from: Optional[dict] = None
        self._scratch: List[str] = []

    def device(self):
        return ray.train.torch.get_device()

    def report(self, metrics: dict) -> None:
        ray.train.report({KIND: "metrics", **metrics})

    def save_checkpoint(self, write, step, metrics) -> None:
        self._maybe_fail(step)
        self._report_directory(write, {KIND: "checkpoint", **metrics}, checkpoint_name(step))

    def save_model(self, write, metrics) -> None:
        self._report_directory(write, {KIND: "model", **metrics}, MODEL_CHECKPOINT_NAME)

    def latest_checkpoint(self) -> Optional[str]:
        """After a worker failure, the latest checkpoint Ray Train kept; else the one `--resume` asked for."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and not _is_training_checkpoint(checkpoint):
            # The final model was reported after the last training checkpoint: restart from that one.
            checkpoint = _latest_training_checkpoint()
        if checkpoint is not None:
            directory = self._local_directory(checkpoint)
            self.restored_from = {"source": "ray_train", "checkpoint": os.path.basename(checkpoint.path.rstrip("/")),
                                  "step": _checkpoint_step(directory)}
        elif self.resume_from:
            directory = self.resume_from
            self.restored_from = {"source": "resume", "checkpoint": os.path.basename(directory.rstrip("/")),
                                  "step": _checkpoint_step(directory)}
        else:
            return None
        if self.is_main:  # logging, not print: Ray Train's print patch would show it twice
            logger.warning("ludwig_llm: continuing from checkpoint %s (step %s, %s).", self.restored_from["checkpoint"],
                           self.restored_from["step"], self.restored_from["source"])
        return directory

    def summary(self) -> dict:
        return {"backend": "ray", "workers": self.world_size, "restored_from": self.restored_from}

    def cleanup(self) -> None:
        for directory in self._scratch:
            shutil.rmtree(directory, ignore_errors=True)

    def _report_directory(self, write, metrics: dict, name: str) -> None:
        if not self.is_main:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
            return
        with tempfile.TemporaryDirectory(prefix="ludwig_llm_ray_") as directory:
            write(directory)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory), checkpoint_dir_name=name)

    def _local_directory(self, checkpoint) -> str:
        if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and os.path.isdir(checkpoint.path):
            return checkpoint.path
        directory = tempfile.mkdtemp(prefix="ludwig_llm_restore_")
        self._scratch.append(directory)
        checkpoint.to_directory(directory)
        return directory

    def _maybe_fail(self, step: int) -> None:
        if not self.fail_once:
            return
        rank, at_step, marker = self.fail_once.split(":", 2)
        if self.rank == int(rank) and step >= int(at_step) and not os.path.exists(marker):
            ray.train.get_all_reported_checkpoints(timeout_s=120)  # the earlier checkpoints are committed first
            with open(marker, "w", encoding="utf-8") as f:
                f.write(f"rank {self.rank} exited at step {step}\n")
            logger.warning("ludwig_llm: %s: worker %s exits at step %s.", FAIL_ONCE_ENV, self.rank, step)
            logging.shutdown()
            os._exit(1)


def _is_training_checkpoint(checkpoint) -> bool:
    return checkpoint.filesystem.get_file_info(os.path.join(checkpoint.path, STATE_FILE)).is_file


def _latest_training_checkpoint():
    reported = ray.train.get_all_reported_checkpoints()
    training = [r.checkpoint for r in reported if (r.metrics or {}).get(KIND) == "checkpoint"]
    return training[-1] if training else None


def _checkpoint_step(directory: str) -> Optional[int]:
    try:
        with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as f:
            return json.load(f)["step"]
    except (OSError, KeyError, ValueError):
        return None


def train_worker(loop_config: dict) -> dict:
    """The Ray Train worker function: the trainer's worker function, as run locally, with a RaySession."""
    job = loop_config["job"]
    job = ray.get(job) if isinstance(job, ray.ObjectRef) else job
    session = RaySession(loop_config.get("resume_from"), loop_config.get("fail_once"))
    try:
        statistics = loop_config["worker"](job, session)
    finally:
        session.cleanup()
    statistics["distributed"] = session.summary()
    return statistics
