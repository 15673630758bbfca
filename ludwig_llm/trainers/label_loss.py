"""The training loss with the LM head applied only where a label is scored.

A causal LM's head projects every position onto the whole vocabulary (SmolLM2: 49k tokens, about a fifth of its
forward FLOPs), yet the loss reads only the positions whose next token is a label: prompt tokens and padding are
wasted head work, forward and backward. transformers 5.x models take `logits_to_keep` as a 2D boolean mask and
return the kept positions' logits flattened, so we pass the positions whose shifted label is scored and take the
cross-entropy there: the same summed token loss over `num_items_in_batch` as the model's own loss.

The call still goes through the wrapped model (DDP, FSDP, DeepSpeed, peft), so their hooks run as before, and an
adapter on `lm_head` is applied by the model itself. Not used where peft changes the sequence or the loss: prompt
learning prepends virtual tokens (positions shift), and AdaLoRA adds its penalty to the model's own loss.
"""

from __future__ import annotations

import torch
from peft.tuners.adalora import AdaLoraModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from ludwig_llm.data.tokenize import IGNORE_INDEX


def can_take_loss_at_labels_only(model) -> bool:
    """Whether `loss_at_labels` gives this (possibly peft-wrapped) model's own loss."""
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return False
    return not isinstance(getattr(model, "base_model", None), AdaLoraModel)


class LogitsToKeepUnsupported(RuntimeError):
    """The model ignored a 2D boolean `logits_to_keep` (an architecture that slices positions its own way)."""


def loss_at_labels(train_model, num_items_in_batch=None, **inputs) -> CausalLMOutputWithPast:
    """`train_model(**inputs)`'s causal-LM loss (summed over scored tokens / `num_items_in_batch`, else their mean),
    with logits only at the scored positions. Raises LogitsToKeepUnsupported for a model without the 2D mask."""
    labels = inputs.pop("labels")
    scored = labels[:, 1:] != IGNORE_INDEX
    keep = torch.nn.functional.pad(scored, (0, 1), value=False)  # position p predicts label p + 1
    output = train_model(**inputs, logits_to_keep=keep, num_items_in_batch=num_items_in_batch)
    logits = output.logits
    count = int(scored.sum())
    if logits.dim() != 2 or logits.shape[0] != count:
        raise LogitsToKeepUnsupported(f"logits of shape {tuple(logits.shape)} for {count} kept positions")
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][scored], reduction="sum")
    loss = loss / (num_items_in_batch if num_items_in_batch is not None else max(count, 1))
    return CausalLMOutputWithPast(loss=loss, logits=logits)


class TrainingLoss:
    """The training forward pass's loss: at label positions only where the model allows it (see the module's
    docstring), else the model's own; a model that turns out to ignore the mask falls back for the rest of the run."""

    def __init__(self, model, enabled: bool = True):
        self.at_labels_only = enabled and can_take_loss_at_labels_only(model)

    def __call__(self, train_model, inputs: dict, num_items_in_batch) -> torch.Tensor:
        if self.at_labels_only:
            try:
                return loss_at_labels(train_model, num_items_in_batch, **inputs).loss
            except (LogitsToKeepUnsupported, IndexError):  # IndexError: a model slicing positions as a 1D index
                self.at_labels_only = False
        return train_model(**inputs, num_items_in_batch=num_items_in_batch).loss
