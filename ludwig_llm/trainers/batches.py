"""Which rows each optimizer step trains on, on every worker, and how many target tokens they hold.

Every worker computes the same global batches from the seed and the epoch alone, so a resumed run
and any number of workers see the same rows in the same steps.
"""

from __future__ import annotations

import math
import random
from typing import List, Sequence

import numpy as np
import torch
from peft import PeftType

from ludwig_llm.data.tokenize import IGNORE_INDEX, length_grouped_sampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def global_batches(lengths: List[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> List[List[int]]:
    """The row indices of each global batch of one epoch: the same on every worker, different each epoch."""
    if group_by_length:
        sampler = length_grouped_sampler(lengths, batch_size, seed=seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def optimizer_steps(batches: List[List[int]], accumulation: int) -> List[List[List[int]]]:
    """Global batches grouped into optimizer steps of `accumulation` micro-batches; an epoch's last step may have fewer."""
    return [batches[i : i + accumulation] for i in range(0, len(batches), accumulation)]


def steps_per_epoch(num_rows: int, batch_size: int, accumulation: int) -> int:
    return math.ceil(math.ceil(num_rows / batch_size) / accumulation)


def worker_share(batch: List[int], rank: int, world_size: int) -> List[int]:
    return batch[rank::world_size]


def scores_first_label(model) -> bool:
    """Whether the model's loss scores a row's first label: prompt and p-tuning put virtual tokens before
    the row, and the last of them predicts its first token. Otherwise a causal LM scores labels 1..n."""
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and config.is_prompt_learning and config.peft_type != PeftType.PREFIX_TUNING)


def target_tokens(labels: Sequence[int], first_label_scored: bool) -> int:
    """The tokens of one row that the causal-LM loss scores (labels other than IGNORE_INDEX, shifted by one)."""
    scored = labels if first_label_scored else labels[1:]
    return sum(1 for label in scored if label != IGNORE_INDEX)
