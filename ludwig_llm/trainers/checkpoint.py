"""Resumable checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG and loop state.

Optimizer/scheduler/RNG state is saved with torch.save and read back with weights_only=True,
which refuses anything but tensors and plain containers, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from typing import List, Optional

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


def trainable_state_dict(model) -> dict:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_trainable_weights(model, path: str) -> None:
    from safetensors.torch import save_file

    save_file(trainable_state_dict(model), path)


def load_trainable_weights(model, path: str) -> None:
    from safetensors.torch import load_file

    state = load_file(path)
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise RuntimeError(f"checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
    params = dict(model.named_parameters())
    import torch

    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def save_checkpoint(directory: str, model, optimizer, scheduler, state: LoopState) -> None:
    import numpy as np
    import torch

    save_trainable_weights(model, os.path.join(directory, WEIGHTS_FILE))
    torch.save(optimizer.state_dict(), os.path.join(directory, OPTIMIZER_FILE))
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


def load_checkpoint(directory: str, model, optimizer, scheduler) -> LoopState:
    import numpy as np
    import torch

    load_trainable_weights(model, os.path.join(directory, WEIGHTS_FILE))
    optimizer.load_state_dict(torch.load(os.path.join(directory, OPTIMIZER_FILE), weights_only=True))
    scheduler.load_state_dict(torch.load(os.path.join(directory, SCHEDULER_FILE), weights_only=True))
    rng = torch.load(os.path.join(directory, RNG_FILE), weights_only=True)
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as f:
        return LoopState(**json.load(f))


def _plain_rng(rng: dict) -> dict:
    # numpy's state holds an ndarray, which weights_only loading refuses; a tensor is accepted.
    import torch

    kind, keys, pos, has_gauss, cached = rng["numpy"]
    rng["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    return rng
