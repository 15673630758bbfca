"""Greedy decoding of a batch with a shared-prompt KV cache: the fast path under `generation.generate`.

Every row of a prediction renders the same template, so a batch's prompts
usually start with the same tokens (a chat template's system turn, the
instructions). Those are run through the model once, for one row, and their
keys and values are copied to every row; only each row's own suffix and the
new tokens are computed per row. Rows are laid out as
``[shared prefix][padding][own suffix]`` with position ids counting only real
tokens, so each row sees exactly what it would see alone.

Rows leave the batch (and their cache rows are dropped) as soon as they end,
so a batch costs what its unfinished rows need, not its longest row times its
size. The loop does only what greedy decoding needs (an argmax per step), with
none of `model.generate`'s per-step logits processors and stopping criteria;
`generation.generate` takes this path only where those would do nothing.
"""

from __future__ import annotations

import inspect
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from transformers.cache_utils import DynamicLayer

# Generation settings that add a logits processor or stopping rule the plain argmax loop does not apply; the
# fast path is taken only when none of them is set, in our config or in the model's own generation config.
_PROCESSOR_SETTINGS = (
    "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id", "bad_words_ids",
    "sequence_bias", "min_length", "min_new_tokens", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "exponential_decay_length_penalty", "max_time", "guidance_scale", "watermarking_config",
)


def _set(value) -> bool:
    return value not in (None, 0, 0.0, False, [], (), {})


def fast_path_applies(model, hf_config) -> bool:
    """Whether plain argmax decoding gives what ``model.generate(generation_config=hf_config)`` gives."""
    if hf_config.do_sample or hf_config.num_beams != 1 or not hf_config.use_cache or hf_config.max_new_tokens is None:
        return False
    if hf_config.repetition_penalty not in (None, 1.0) or getattr(hf_config, "num_return_sequences", 1) not in (None, 1):
        return False
    for source in (hf_config, getattr(model, "generation_config", None)):
        if source is not None and any(_set(getattr(source, name, None)) for name in _PROCESSOR_SETTINGS):
            return False
    return cache_reuse_supported(model)


def cache_reuse_supported(model) -> bool:
    """Whether the model can be called with a KV cache we built (not for peft's virtual-token adapters)."""
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return False  # virtual tokens are injected by peft's own forward and generate
    config = getattr(model, "config", None)
    return not getattr(config, "is_encoder_decoder", False)


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (its suffix computes the first logits)."""
    shortest = min(len(row) for row in rows)
    length = 0
    first = rows[0]
    while length < shortest - 1 and all(row[length] == first[length] for row in rows):
        length += 1
    return length


def accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class UnsupportedCache(Exception):
    """The model's cache is not a plain per-position one (sliding windows, recurrent state): use `model.generate`."""


def _check_plain_cache(cache) -> None:
    layers = getattr(cache, "layers", None)
    if not layers or not all(type(layer) is DynamicLayer for layer in layers):
        raise UnsupportedCache()


def prefill_with_shared_prefix(model, rows: Sequence[Sequence[int]], pad_id: int, device, *, keep: Optional[int]):
    """One forward over a batch of token rows, their common prefix computed once.

    Returns ``(logits, cache, attention_mask, next_positions)``: the logits of the last ``keep`` positions of
    every row (all positions with ``keep=None``), the cache holding every row, the 2D attention mask over
    the cache, and each row's next position id.
    """
    batch = len(rows)
    prefix = shared_prefix_length(rows) if batch > 1 else 0
    cache = None
    if prefix:
        out = model(input_ids=torch.tensor([list(rows[0][:prefix])], device=device), use_cache=True,
                    **({"logits_to_keep": 1} if keep is not None else {}))
        cache = out.cache
        _check_plain_cache(cache)
        cache.batch_repeat_interleave(batch)
    suffixes = [row[prefix:] for row in rows]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    suffix_mask = torch.zeros((batch, width), dtype=torch.long)
    for i, suffix in enumerate(suffixes):
        input_ids[i, width - len(suffix):] = torch.as_tensor(list(suffix), dtype=torch.long)
        suffix_mask[i, width - len(suffix):] = 1
    attention_mask = torch.cat([torch.ones((batch, prefix), dtype=torch.long), suffix_mask], dim=1).to(device)
    position_ids = (prefix + suffix_mask.cumsum(-1) - 1).clamp(min=0).to(device)
    kwargs = {"logits_to_keep": keep} if keep is not None else {}
    out = model(input_ids=input_ids.to(device), attention_mask=attention_mask, position_ids=position_ids,
                cache=cache, use_cache=True, **kwargs)
    if cache is None:
        _check_plain_cache(out.cache)
    next_positions = torch.tensor([len(row) for row in rows], device=device)
    return out.logits, out.cache, attention_mask, next_positions


def greedy_decode(
    model,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    pad_id: int,
    device,
    is_done: Optional[Callable[[int, List[int]], bool]] = None,
) -> List[List[int]]:
    """The greedy continuation of every row (without the end-of-sequence token), at most ``max_new_tokens`` each.

    ``is_done(row, tokens)`` may end a row early (a stop string). Raises `UnsupportedCache` before any
    token is produced when the model's cache cannot take the shared-prefix layout.
    """
    new_tokens: List[List[int]] = [[] for _ in rows]
    if max_new_tokens <= 0:
        return new_tokens
    keep = 1 if accepts_logits_to_keep(model) else None
    logits, cache, attention_mask, positions = prefill_with_shared_prefix(model, rows, pad_id, device, keep=keep)
    active = list(range(len(rows)))  # original row index of each batch row
    eos = set(int(i) for i in eos_ids)
    for step in range(max_new_tokens):
        # Same as generate's greedy step: argmax of the float32 logits of the last position.
        chosen = logits[:, -1, :].float().argmax(dim=-1)
        still: List[int] = []
        for batch_row, token in enumerate(chosen.tolist()):
            row = active[batch_row]
            if token in eos:
                continue
            new_tokens[row].append(token)
            if not (is_done is not None and is_done(row, new_tokens[row])):
                still.append(batch_row)
        if not still or step == max_new_tokens - 1:
            break
        if len(still) < len(active):
            index = torch.tensor(still, device=device)
            cache.batch_select_indices(index)
            attention_mask, positions, chosen = attention_mask[index], positions[index], chosen[index]
            active = [active[i] for i in still]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
        out = model(input_ids=chosen[:, None], attention_mask=attention_mask, position_ids=positions[:, None],
                    cache=cache, use_cache=True, **({"logits_to_keep": 1} if keep else {}))
        logits, cache, positions = out.logits, out.cache, positions + 1
    return new_tokens


def stop_string_check(tokenizer, stop_strings: Sequence[str]) -> Optional[Callable[[int, List[int]], bool]]:
    """A row is done once its decoded new text holds a stop string (the text is cut there afterwards anyway)."""
    stops: Tuple[str, ...] = tuple(s for s in stop_strings or () if s)
    if not stops:
        return None

    def done(_row: int, tokens: List[int]) -> bool:
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        return any(stop in text for stop in stops)

    return done
