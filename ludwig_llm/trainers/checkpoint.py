"""Resumable checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG and loop state.

Weights and optimizer state are full (unsharded) and keyed by parameter name, whatever the distribution
strategy that wrote them (see trainers/strategies.py), so any strategy and number of workers can resume.

Optimizer/scheduler/RNG state is saved with torch.save and read back with weights_only=True,
which refuses anything but tensors and plain containers, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ludwig_llm.results import write_file_atomically

WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"
STATE_FILE = "trainer_state.json"
BEST_WEIGHTS_FILE = "best.safetensors"  # trainable weights of the best validation step so far


@dataclass
class LoopState:
    """Where the training loop is; enough to continue exactly from an optimizer-step boundary."""

    step: int = 0
    epoch: int = 0
    micro_batches_done_in_epoch: int = 0
    best_metric: Optional[float] = None
    best_step: Optional[int] = None
    evaluations_without_improvement: int = 0
    steps: List[dict] = field(default_factory=list)
    evaluations: List[dict] = field(default_factory=list)


@dataclass
class Checkpoint:
    """A checkpoint read back: full trainable weights and optimizer state by parameter name, the
    scheduler's state and the loop's."""

    weights: dict
    optimizer: dict
    scheduler: dict
    state: LoopState


def save_weights(weights: dict, path: str) -> None:
    write_file_atomically(path, lambda tmp: save_file(weights, tmp))


def load_weights(path: str) -> dict:
    return load_file(path)


def save_checkpoint(directory: str, weights: dict, optimizer_state: dict, scheduler, state: LoopState) -> None:
    save_weights(weights, os.path.join(directory, WEIGHTS_FILE))
    torch.save(optimizer_state, os.path.join(directory, OPTIMIZER_FILE))
    torch.save(scheduler.state_dict(), os.path.join(directory, SCHEDULER_FILE))
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(_plain_rng(rng), os.path.join(directory, RNG_FILE))
    with open(os.path.join(directory, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump(asdict(state), f, indent=2)


def read_checkpoint(directory: str) -> Checkpoint:
    """Read a checkpoint and restore the random number generators it saved."""
    rng = torch.load(os.path.join(directory, RNG_FILE), weights_only=True)
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as f:
        state = LoopState(**json.load(f))
    return Checkpoint(
        weights=load_weights(os.path.join(directory, WEIGHTS_FILE)),
        optimizer=torch.load(os.path.join(directory, OPTIMIZER_FILE), weights_only=True),
        scheduler=torch.load(os.path.join(directory, SCHEDULER_FILE), weights_only=True),
        state=state,
    )


def _plain_rng(rng: dict) -> dict:
    # numpy's state holds an ndarray, which weights_only loading refuses; a tensor is accepted.
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    rng["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    return rng
