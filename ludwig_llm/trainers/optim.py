"""Optimizer and learning-rate schedule from the trainer section."""

from __future__ import annotations

import math

import bitsandbytes as bnb
import torch
from transformers import get_scheduler


def build_optimizer(model, trainer):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Weight decay on biases and norm scales hurts; the usual rule is to decay matrices only.
        (no_decay if param.ndim < 2 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": trainer.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    opt = trainer.optimizer
    if opt.type == "sgd":
        return torch.optim.SGD(groups, lr=trainer.learning_rate, momentum=opt.momentum)
    if opt.type in ("adamw_8bit", "paged_adamw_8bit"):
        cls = bnb.optim.AdamW8bit if opt.type == "adamw_8bit" else bnb.optim.PagedAdamW8bit
        return cls(groups, lr=trainer.learning_rate, betas=tuple(opt.betas), eps=opt.eps)
    if opt.type == "adam":
        return torch.optim.Adam(groups, lr=trainer.learning_rate, betas=tuple(opt.betas), eps=opt.eps)
    return torch.optim.AdamW(groups, lr=trainer.learning_rate, betas=tuple(opt.betas), eps=opt.eps)


def build_scheduler(optimizer, trainer, total_steps: int):
    schedule = trainer.learning_rate_scheduler
    warmup = schedule.warmup_steps if schedule.warmup_steps is not None else math.ceil(schedule.warmup_fraction * total_steps)
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[schedule.decay]
    return get_scheduler(name, optimizer, num_warmup_steps=min(warmup, total_steps), num_training_steps=total_steps)
