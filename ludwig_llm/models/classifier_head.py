"""The classification head of a category output with `decoder: {type: classifier}` (Ludwig 0.8's classifier decoder).

A linear layer reads the final hidden state of each prompt's last token and gives one logit per label. During
training it is a submodule of the model (`model.classification_head`), so the optimizer, the strategies, the
checkpoints and the best-weights copy treat it like the adapter's weights; it is saved beside the adapter as
`classifier_head.safetensors` (not in the adapter or model files, which plain peft/transformers load) and attached
again when the model directory is opened.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ludwig_llm.data.tokenize import pad_token_id_of
from ludwig_llm.errors import UserError
from ludwig_llm.models.modes import evaluating

HEAD_ATTRIBUTE = "classification_head"
HEAD_FILE = "classifier_head.safetensors"


class ClassificationHead(torch.nn.Linear):
    """hidden size -> number of labels; initialised small, so training starts near uniform probabilities."""

    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__(hidden_size, num_labels)
        torch.nn.init.normal_(self.weight, std=hidden_size ** -0.5 * 0.1)
        torch.nn.init.zeros_(self.bias)


def _unwrapped(model):
    return getattr(model, "module", model)  # DDP wraps the model


def hidden_size_of(model) -> int:
    config = _unwrapped(model).config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


def attach_new_head(model, num_labels: int, device) -> ClassificationHead:
    """A fresh head on `model` (trainable, float32), before the optimizer is built."""
    head = ClassificationHead(hidden_size_of(model), num_labels).to(device=device, dtype=torch.float32)
    setattr(_unwrapped(model), HEAD_ATTRIBUTE, head)
    return head


def head_of(model) -> Optional[ClassificationHead]:
    return getattr(_unwrapped(model), HEAD_ATTRIBUTE, None)


@contextlib.contextmanager
def head_set_aside(model) -> Iterator[Optional[ClassificationHead]]:
    """The model without its head for the duration (so `save_pretrained` writes only the adapter or base weights)."""
    unwrapped = _unwrapped(model)
    head = getattr(unwrapped, HEAD_ATTRIBUTE, None)
    if head is None:
        yield None
        return
    delattr(unwrapped, HEAD_ATTRIBUTE)
    try:
        yield head
    finally:
        setattr(unwrapped, HEAD_ATTRIBUTE, head)


def save_head(head: ClassificationHead, directory: str) -> None:
    state = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in head.state_dict().items()}
    save_file(state, os.path.join(directory, HEAD_FILE))


def attach_saved_head(model, directory: str, num_labels: int) -> ClassificationHead:
    """The head saved in `directory`, attached to `model` on its device."""
    path = os.path.join(directory, HEAD_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{directory} has no {HEAD_FILE}, which a category output with decoder 'classifier' needs; "
                        "copy the model directory again, or train it again.")
    state = load_file(path)
    if tuple(state["weight"].shape) != (num_labels, hidden_size_of(model)):
        raise UserError(f"{path} holds a head of shape {tuple(state['weight'].shape)}, but the model has "
                        f"{num_labels} labels and hidden size {hidden_size_of(model)}.")
    head = ClassificationHead(hidden_size_of(model), num_labels)
    head.load_state_dict(state)
    device = next(_unwrapped(model).parameters()).device
    head = head.to(device).eval()
    setattr(_unwrapped(model), HEAD_ATTRIBUTE, head)
    return head


def last_token_logits(model, head: ClassificationHead, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(rows, labels) logits of the head on each row's last non-pad token, for rows padded on the right (so each
    row's positions are those of training, and the causal mask keeps padding out of its last token's state).
    Prompt-learning adapters prepend virtual tokens to the hidden states: positions are shifted by their count."""
    output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1,
                   use_cache=False)
    hidden = output.hidden_states[-1]
    last = hidden.shape[1] - input_ids.shape[1] + attention_mask.sum(-1) - 1
    features = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return head(features.float())


def classify(model, tokenizer, prompt_ids: Sequence[List[int]], labels: Sequence[str], *, batch_size: int = 8,
             progress: bool = False) -> np.ndarray:
    """(rows, labels) probabilities from the model's attached head, one forward pass per batch of prompts. The
    signature is label scoring's (`score_labels`): each category decoder's `implementation` is called the same way."""
    head = head_of(model)
    if head is None or head.out_features != len(labels):
        raise UserError(f"this model has no classification head for its {len(labels)} labels (decoder 'classifier').")
    pad_token_id = pad_token_id_of(tokenizer)
    device = next(_unwrapped(model).parameters()).device
    probabilities = []
    with evaluating(model):
        for start in range(0, len(prompt_ids), batch_size):
            batch = prompt_ids[start:start + batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([list(ids) + [pad_token_id] * (width - len(ids)) for ids in batch], device=device)
            attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
            logits = last_token_logits(model, head, input_ids, attention_mask)
            probabilities.append(torch.softmax(logits, dim=-1).cpu().numpy())
    return np.concatenate(probabilities) if probabilities else np.zeros((0, head.out_features))
