"""CorDA (`init_lora_weights: corda`): forwards over training rows through the base model, before peft wraps it,
gather each adapted layer's input covariance (peft's `preprocess_corda`); `get_peft_model` then starts LoRA from the
covariance-oriented SVD of the weights and leaves the rest in the base weights.

The base weights change, so the saved adapter is converted into a plain LoRA on the unchanged base model
(models/initial_adapter.py), as for PiSSA and OLoRA."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from peft.tuners.lora.corda import preprocess_corda

from ludwig_llm.errors import UserError
from ludwig_llm.models.modes import evaluating


def is_corda(peft_config) -> bool:
    return getattr(peft_config, "init_lora_weights", None) == "corda"


def gather_covariance(model, peft_config, rows: Optional[Sequence[dict]]) -> None:
    """Run tokenized training ``rows`` (``input_ids``) through the base ``model``, not yet wrapped, one at a time (peft's
    hooks take one sequence, and no padding enters the covariance), so that peft's CorDA init can use them."""
    if not rows:
        raise UserError("adapter.init_lora_weights: 'corda' initializes LoRA from forwards over the training rows, and "
                        "there are none here (it runs when fine-tuning starts, not when loading a model).")
    device = next(model.parameters()).device

    def run_model() -> None:
        with evaluating(model, torch.no_grad):
            for row in rows:
                model(input_ids=torch.tensor([row["input_ids"]], device=device))

    preprocess_corda(model, peft_config, run_model=run_model)
