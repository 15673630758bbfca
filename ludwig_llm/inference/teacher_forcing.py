"""Teacher-forced evaluation: loss, perplexity and next-token accuracy of the targets given the prompts."""

from __future__ import annotations

import contextlib
import math

import torch

from ludwig_llm.metrics.text import TokenLossAccumulator
from ludwig_llm.models.modes import evaluating


def teacher_forced_metrics(model, rows, *, batch_size: int, collate, device, autocast=None, rank: int = 0,
                           world_size: int = 1) -> dict:
    """Metrics over `rows` (encoded with labels); each worker scores its share and torchmetrics syncs the totals."""
    accumulator = TokenLossAccumulator()
    share = rows[rank::world_size]
    # Every worker runs as many batches as the largest share needs: with a sharded model each forward pass
    # is collective. A worker whose share ran out repeats a row and does not count it.
    batches = math.ceil(math.ceil(len(rows) / world_size) / batch_size)
    with evaluating(model, torch.no_grad):
        for index in range(batches):
            part = share[index * batch_size : (index + 1) * batch_size]
            inputs = {k: v.to(device) for k, v in collate(part or rows[:1]).items()}
            with autocast or contextlib.nullcontext():
                logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            if part:
                accumulator.update(logits, inputs["labels"])
    return accumulator.compute()
