"""Running a model for inference in the middle of training: eval mode and no autograd, then back as it was."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def evaluating(model, grad_mode=torch.inference_mode) -> Iterator[None]:
    """Eval mode (no dropout) and GRAD_MODE for the block, restoring the model's training flag however it ends.

    `torch.no_grad` instead of the default `torch.inference_mode` where the outputs meet tensors that autograd
    will see later (a sharded model's collective forward passes during evaluation).
    """
    was_training = model.training
    model.eval()
    try:
        with grad_mode():
            yield
    finally:
        model.train(was_training)
