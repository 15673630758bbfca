"""CorDA (`init_lora_weights: corda`): forwards over training rows through the base model, before peft wraps it,
gather each adapted layer's input covariance (peft's `preprocess_corda`); `get_peft_model` then starts LoRA from the
covariance-oriented SVD of the weights and leaves the rest in the base weights.

Because the base weights change, the initial adapter is kept aside, and the saved adapter is converted against it
(peft's `path_initial_model_for_weight_conversion`) into a plain LoRA of rank 2r on the unchanged base model: a saved
CorDA run loads, predicts and merges like any LoRA."""

from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence

import torch
from peft.tuners.lora.corda import preprocess_corda

from ludwig_llm.errors import UserError

_INITIAL_ADAPTER = "corda_initial"  # the adapter name peft gives the initial weights while converting
_KEPT_ATTRIBUTE = "ludwig_llm_corda_initial"


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
        was_training = model.training
        model.eval()
        for row in rows:
            model(input_ids=torch.tensor([row["input_ids"]], device=device))
        model.train(was_training)

    preprocess_corda(model, peft_config, run_model=run_model)


def keep_initial_adapter(peft_model) -> None:
    """Save the just-initialized adapter aside (removed with the model) for the conversion when the run is saved."""
    kept = tempfile.TemporaryDirectory(prefix="ludwig_llm_corda_")
    peft_model.save_pretrained(os.path.join(kept.name, _INITIAL_ADAPTER))
    object.__setattr__(peft_model, _KEPT_ATTRIBUTE, kept)  # a plain attribute, not a module or parameter


def initial_adapter_path(model) -> Optional[str]:
    """Where ``model``'s initial CorDA adapter was kept, for ``save_pretrained(path_initial_model_for_weight_conversion=)``;
    None for any other model."""
    kept = getattr(model, "__dict__", {}).get(_KEPT_ATTRIBUTE)
    return os.path.join(kept.name, _INITIAL_ADAPTER) if kept is not None else None
