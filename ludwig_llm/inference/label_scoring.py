"""Category prediction by scoring each label as the continuation of the prompt.

A label's score is its total log-likelihood after the prompt: the sum of the
log-probabilities of its tokens, each given the prompt and the label tokens
before it. A softmax over the label set turns scores into probabilities, and
the prediction is the most probable label, so it is always a valid one.

Scores are summed, not averaged per token (``length_normalize=False``), the
usual choice for a small closed label set: the probabilities are then those of
the model restricted to the label set. The catch is that each extra token
multiplies in one more probability below 1, so a label that needs more tokens
(``"neutral"`` vs ``"no"``) is at a disadvantage the model has to overcome.
Averaging removes that bias but no longer gives the model's probability of
the label, so it is only an option.

Label tokenization follows how the label would appear in text: after a prompt
ending in a letter or punctuation (``"Sentiment:"``) the label is tokenized
with a leading space (``" positive"``), as a word would be in running text;
after whitespace (``"Answer:\\n"``, a chat template's assistant header) or a
special token it is tokenized as is. A label is not required to be followed by
end-of-sequence, so ``"pos"`` also collects some of ``"positive"``'s mass;
choose labels that are not prefixes of one another.

Each prompt is run through the model once (a batch's common prefix once for
the batch) and every label is scored as a continuation of its KV cache: the
scores of running each (prompt, label) pair alone, to float rounding, at a
third of the time on SmolLM2 with 2 or 10 labels
(benchmarks/label_scoring_throughput.py). Models whose cache cannot be reused
that way (peft's virtual-token adapters, sliding-window caches) are scored
pair by pair.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ludwig_llm.data.tokenize import pad_token_id_of
from ludwig_llm.errors import UserError
from ludwig_llm.inference.generation import left_pad, length_sorted_batches, model_device
from ludwig_llm.inference.greedy import UnsupportedCache, accepts_logits_to_keep, cache_reuse_supported, prefill_with_shared_prefix
from ludwig_llm.models.modes import evaluating


def prompt_wants_space(tokenizer, prompt_ids: Sequence[int], special_ids: Optional[Set[int]] = None) -> bool:
    """Whether a label after this prompt starts with a space (see module docstring)."""
    if not prompt_ids:
        return False
    last = int(prompt_ids[-1])
    if last in (special_ids if special_ids is not None else set(tokenizer.all_special_ids)):
        return False
    tail = tokenizer.decode([last])
    return bool(tail) and not tail[-1].isspace()


def _prepends_space_itself(tokenizer) -> bool:
    # SentencePiece tokenizers with a "▁" prefix (Llama 2, Mistral) already
    # encode "positive" as "▁positive"; adding a space would double it.
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return bool(tokens) and tokens[0].startswith("\u2581")


def label_token_ids(tokenizer, labels: Sequence[str]) -> Dict[bool, List[List[int]]]:
    """Token ids of every label, keyed by whether the label follows a space-wanting prompt."""
    self_spaced = _prepends_space_itself(tokenizer)
    variants: Dict[bool, List[List[int]]] = {}
    for with_space in (False, True):
        prefix = " " if with_space and not self_spaced else ""
        variants[with_space] = [tokenizer(prefix + str(label), add_special_tokens=False)["input_ids"] for label in labels]
    for label, ids in zip(labels, variants[False]):
        if not ids:
            raise UserError(f"Category label {label!r} is empty after tokenization; every label needs at least one token.")
    return variants


def label_ids_per_row(tokenizer, prompt_ids: List[List[int]], labels: Sequence[str]) -> List[List[List[int]]]:
    """For each prompt, the token ids of every label as they would follow that prompt."""
    variants = label_token_ids(tokenizer, labels)
    special_ids = set(tokenizer.all_special_ids)
    return [variants[prompt_wants_space(tokenizer, ids, special_ids)] for ids in prompt_ids]


def _pair_log_likelihoods(
    model, sequences: List[Tuple[List[int], List[int]]], pad_id: int, device, logits_to_keep: bool
) -> List[float]:
    """Summed label log-probabilities for one batch of (prompt, label) pairs, in one forward pass."""
    # Left padding puts every label at the end of its row, so only the last
    # (longest label + 1) positions need logits, not the whole vocabulary
    # projection of every prompt position.
    input_ids, attention_mask = left_pad([prompt + label for prompt, label in sequences], pad_id, device)
    label_width = max(len(label) for _, label in sequences)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": label_width + 1} if logits_to_keep else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **kwargs).logits
    logits = logits[:, -(label_width + 1):-1].float()
    targets = input_ids[:, -label_width:]
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    lengths = torch.tensor([len(label) for _, label in sequences], device=token_logprobs.device)
    is_label = torch.arange(label_width, device=token_logprobs.device)[None, :] >= (label_width - lengths)[:, None]
    return (token_logprobs * is_label).sum(-1).tolist()


def _cached_log_likelihoods(model, prompts: List[List[int]], label_ids: List[List[List[int]]], pad_id: int, device,
                            keep: bool) -> List[List[float]]:
    """Summed label log-probabilities for a batch of prompts: each prompt is encoded once (its shared prefix
    once for the batch), its cache copied over the labels, and all labels continue it in one more forward."""
    logits, cache, attention_mask, positions = prefill_with_shared_prefix(model, prompts, pad_id, device, keep=1 if keep else None)
    first = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (rows, vocab): every label's first token
    n_labels = len(label_ids[0])
    pairs = [label for row in label_ids for label in row]  # row-major, as repeat_interleave orders the cache
    scores = torch.stack([first[i // n_labels, label[0]] for i, label in enumerate(pairs)])
    rest_width = max(len(label) for label in pairs) - 1
    if rest_width > 0:  # labels of one token need no second pass
        cache.batch_repeat_interleave(n_labels)
        # Right-padded: a label's own tokens come first, so padding after them changes none of their logits.
        rest = torch.full((len(pairs), rest_width), pad_id, dtype=torch.long)
        rest_mask = torch.zeros((len(pairs), rest_width), dtype=torch.long)
        for i, label in enumerate(pairs):
            rest[i, :len(label) - 1] = torch.as_tensor(label[:-1], dtype=torch.long)
            rest_mask[i, :len(label) - 1] = 1
        mask = torch.cat([attention_mask.repeat_interleave(n_labels, dim=0), rest_mask.to(device)], dim=1)
        position_ids = positions.repeat_interleave(n_labels)[:, None] + torch.arange(rest_width, device=device)[None, :]
        out = model(input_ids=rest.to(device), attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True)
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)  # position k predicts label token k + 1
        targets = torch.zeros((len(pairs), rest_width), dtype=torch.long)
        for i, label in enumerate(pairs):
            targets[i, :len(label) - 1] = torch.as_tensor(label[1:], dtype=torch.long)
        token_logprobs = logprobs.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1)
        scores = scores + (token_logprobs * rest_mask.to(device)).sum(-1)
    return scores.view(len(prompts), n_labels).tolist()


def label_log_likelihoods(
    model, tokenizer, prompt_ids: List[List[int]], labels: Sequence[str], *, batch_size: int = 8, progress: bool = True,
    shared_cache: bool = True,
) -> np.ndarray:
    """(rows, labels) array of each label's summed token log-probability after each prompt.

    With ``shared_cache`` (where the model allows it) each prompt is encoded once and every label scored as
    a continuation of its KV cache; otherwise each (prompt, label) pair is a sequence of its own.
    """
    if not labels:
        raise UserError("Cannot score an empty label set.")
    if any(len(ids) == 0 for ids in prompt_ids):
        raise UserError("Cannot score labels after an empty prompt; every row needs at least one prompt token.")
    if shared_cache and cache_reuse_supported(model):
        try:
            return _label_log_likelihoods_cached(model, tokenizer, prompt_ids, labels, batch_size=batch_size, progress=progress)
        except UnsupportedCache:
            pass  # sliding-window or recurrent caches: score pair by pair
    pairs = []  # (row, label index, prompt ids, label ids): one sequence per pair
    for row, (ids, label_ids) in enumerate(zip(prompt_ids, label_ids_per_row(tokenizer, prompt_ids, labels))):
        pairs.extend((row, j, ids, label_ids[j]) for j in range(len(labels)))

    scores = np.zeros((len(prompt_ids), len(labels)), dtype=np.float64)
    pad_id, device, keep = pad_token_id_of(tokenizer), model_device(model), accepts_logits_to_keep(model)
    with evaluating(model), tqdm(total=len(pairs), desc="Scoring labels", unit="pair", disable=not progress) as bar:
        for batch in length_sorted_batches([len(p[2]) + len(p[3]) for p in pairs], batch_size):
            values = _pair_log_likelihoods(model, [(pairs[i][2], pairs[i][3]) for i in batch], pad_id, device, keep)
            for i, value in zip(batch, values):
                scores[pairs[i][0], pairs[i][1]] = value
            bar.update(len(batch))
    return scores


def _label_log_likelihoods_cached(model, tokenizer, prompt_ids, labels, *, batch_size: int, progress: bool) -> np.ndarray:
    rows_per_batch = max(1, batch_size // len(labels))  # batch_size counts (prompt, label) sequences, as pair by pair
    label_ids = label_ids_per_row(tokenizer, prompt_ids, labels)
    scores = np.zeros((len(prompt_ids), len(labels)), dtype=np.float64)
    pad_id, device, keep = pad_token_id_of(tokenizer), model_device(model), accepts_logits_to_keep(model)
    with evaluating(model), tqdm(total=len(prompt_ids), desc="Scoring labels", unit="row", disable=not progress) as bar:
        for batch in length_sorted_batches([len(ids) for ids in prompt_ids], rows_per_batch):
            values = _cached_log_likelihoods(model, [prompt_ids[i] for i in batch], [label_ids[i] for i in batch],
                                             pad_id, device, keep)
            scores[batch] = np.asarray(values, dtype=np.float64)
            bar.update(len(batch))
    return scores


def score_labels(
    model,
    tokenizer,
    prompt_ids: List[List[int]],
    labels: Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool = True,
    length_normalize: bool = False,
) -> np.ndarray:
    """(rows, labels) probabilities of each label continuing each prompt, each row summing to 1.

    ``batch_size`` counts (prompt, label) sequences per forward pass. With
    ``length_normalize`` a label's score is its mean token log-probability
    instead of the sum (see the module docstring for the trade-off).
    """
    if len(prompt_ids) == 0:
        return np.zeros((0, len(labels)))
    scores = label_log_likelihoods(model, tokenizer, prompt_ids, labels, batch_size=batch_size, progress=progress)
    if length_normalize:
        scores /= np.array([[len(ids) for ids in row] for row in label_ids_per_row(tokenizer, prompt_ids, labels)])
    return softmax(scores)


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_labels(probabilities: np.ndarray, labels: Sequence[str]) -> List[str]:
    """The most probable label per row (the first one on an exact tie)."""
    return [labels[int(i)] for i in np.argmax(probabilities, axis=-1)]
