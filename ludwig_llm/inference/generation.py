"""Batched text generation from tokenized prompts.

Rows are sorted by prompt length before batching so each batch pads little,
left-padded (a decoder-only model continues from the last position of every
row), and returned in their original order. Greedy decoding with nothing else
set runs `inference.greedy`'s loop, which computes the batch's shared prompt
prefix once and drops rows from the batch as they end, with the model's fp32 CPU linears on oneDNN's
prepacked weights (`inference.packed_linear`) where that pays. Outputs are cleaned the same way
for every caller: only the new tokens, special tokens skipped, cut at the first
stop string, surrounding whitespace stripped.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig as HFGenerationConfig

from ludwig_llm.data.tokenize import pad_token_id_of
from ludwig_llm.errors import UserError
from ludwig_llm.inference.greedy import UnsupportedCache, fast_path_applies, greedy_decode, stop_string_check
from ludwig_llm.inference.packed_linear import packed_linears
from ludwig_llm.models.modes import evaluating
from ludwig_llm.schema.generation import GenerationConfig

# Passed whatever the decoding mode; the rest only where the mode uses them, so
# transformers does not warn about e.g. a temperature set for greedy decoding.
_ALWAYS = ("max_new_tokens", "min_new_tokens", "do_sample", "num_beams", "repetition_penalty", "no_repeat_ngram_size", "use_cache")
_SAMPLING = ("temperature", "top_k", "top_p", "typical_p")
_BEAM = ("length_penalty", "early_stopping")


def to_generation_kwargs(config: GenerationConfig) -> Dict[str, Any]:
    """Keyword arguments for ``transformers.GenerationConfig`` from our generation section.

    Every setting the decoding mode uses is given explicitly, because transformers
    fills unset (None) values from the model's own ``generation_config.json`` and
    a hub default (say ``temperature: 0.6``) must not override what the YAML says.
    """
    kwargs = {name: getattr(config, name) for name in _ALWAYS}
    if config.do_sample:
        kwargs.update({name: getattr(config, name) for name in _SAMPLING})
        # 0 filters nothing; None would inherit the model's default min_p.
        kwargs["min_p"] = config.min_p if config.min_p is not None else 0.0
    if config.num_beams > 1:
        kwargs.update({name: getattr(config, name) for name in _BEAM})
    if config.stop_strings:
        kwargs["stop_strings"] = list(config.stop_strings)
    return kwargs


def eos_token_ids(model, tokenizer) -> List[int]:
    """The tokenizer's end-of-sequence id plus any the model's generation config adds.

    Chat models often end a turn with a token other than the tokenizer's eos
    (Llama 3's ``<|eot_id|>``); their generation config lists both.
    """
    ids: List[int] = []
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, model_eos):
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if token_id is not None and token_id not in ids:
                ids.append(int(token_id))
    return ids


def build_generation_config(model, tokenizer, config: GenerationConfig):
    """A ``transformers.GenerationConfig`` from our section, with the tokenizer's special token ids."""
    eos = eos_token_ids(model, tokenizer)
    return HFGenerationConfig(
        **to_generation_kwargs(config),
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else pad_token_id_of(tokenizer),
        eos_token_id=eos if len(eos) != 1 else eos[0],
        bos_token_id=tokenizer.bos_token_id,
    )


def model_device(model):
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device=None):
    """(input_ids, attention_mask) tensors, each row right-aligned."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row):] = 1
    return input_ids.to(device), attention_mask.to(device)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    """Row indices grouped into batches of similar length, longest first.

    Longest first makes an out-of-memory error show up on the first batch
    rather than after most of the work is done.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1 (got {batch_size}).")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def clean_output(text: str, stop_strings: Optional[Sequence[str]] = None) -> str:
    """Cut ``text`` at the earliest stop string and strip surrounding whitespace."""
    cut = len(text)
    for stop in stop_strings or ():
        position = text.find(stop) if stop else -1
        if 0 <= position < cut:
            cut = position
    return text[:cut].strip()


def cut_at_eos(tokens: List[int], eos_ids: Sequence[int], *, keep_eos: bool = False) -> List[int]:
    """A generated row's tokens up to its first end-of-sequence token (included with ``keep_eos``).

    Rows that finish early are filled with padding; cutting at the first eos keeps that filler out even
    where the pad token is not a special token.
    """
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: position + 1] if keep_eos else tokens[:position]
    return tokens


def generate(
    model,
    tokenizer,
    prompt_ids: List[List[int]],
    generation: GenerationConfig,
    *,
    batch_size: int = 8,
    progress: bool = True,
    stop_token_ids: Sequence[int] = (),
) -> List[str]:
    """Generate one cleaned completion per tokenized prompt, in the order given.

    ``model`` may be a plain transformers causal LM or a peft-wrapped one.
    Prompts must already hold any special tokens (bos) the model expects. ``stop_token_ids`` end generation
    too, besides the end-of-sequence ids.
    """
    if not prompt_ids:
        return []
    if any(len(ids) == 0 for ids in prompt_ids):
        raise UserError("Cannot generate from an empty prompt; every row needs at least one prompt token.")

    hf_config = build_generation_config(model, tokenizer, generation)
    pad_id = hf_config.pad_token_id
    eos_ids = eos_token_ids(model, tokenizer)
    extra_stops = [int(i) for i in stop_token_ids if int(i) not in eos_ids]
    if extra_stops:  # e.g. a chat template's end-of-turn token that is not the tokenizer's eos
        eos_ids = eos_ids + extra_stops
        hf_config.eos_token_id = eos_ids
    device = model_device(model)
    # transformers builds its stop-string criteria from the tokenizer's vocabulary.
    extra = {"tokenizer": tokenizer} if generation.stop_strings else {}
    # Plain greedy decoding takes the shared-prefix loop (see inference.greedy); anything else model.generate.
    greedy = fast_path_applies(model, hf_config)
    stop_check = stop_string_check(tokenizer, generation.stop_strings)

    # Batched decode steps run faster on oneDNN's prepacked weights on the CPU (see inference.packed_linear).
    # Packing costs about 8 one-row decode steps (SmolLM2-135M, one thread: 0.42 s against 53 ms) and saves about a
    # third of every step of two or more rows (2 rows: ~98 -> ~61 ms, 4 rows: ~86 -> ~49 ms), nothing much for one.
    decode_steps = -(-len(prompt_ids) // max(batch_size, 1)) * (hf_config.max_new_tokens or 0)
    pack = greedy and min(batch_size, len(prompt_ids)) >= 2 and decode_steps >= 32
    packing = packed_linears(model) if pack else contextlib.nullcontext()
    bar = tqdm(total=len(prompt_ids), desc="Generating", unit="row", disable=not progress)
    outputs: List[Optional[str]] = [None] * len(prompt_ids)
    with evaluating(model), packing, bar:
        for batch in length_sorted_batches([len(ids) for ids in prompt_ids], batch_size):
            rows = [prompt_ids[i] for i in batch]
            new_tokens = None
            if greedy:
                try:
                    new_tokens = greedy_decode(model, rows, max_new_tokens=hf_config.max_new_tokens, eos_ids=eos_ids,
                                               pad_id=pad_id, device=device, is_done=stop_check)
                except UnsupportedCache:
                    greedy = False
            if new_tokens is None:
                input_ids, attention_mask = left_pad(rows, pad_id, device)
                generated = model.generate(
                    input_ids=input_ids, attention_mask=attention_mask, generation_config=hf_config, **extra
                )
                new_tokens = [cut_at_eos(row, eos_ids) for row in generated[:, input_ids.shape[1]:].tolist()]
            for row_index, tokens in zip(batch, new_tokens):
                text = tokenizer.decode(tokens, skip_special_tokens=True)
                outputs[row_index] = clean_output(text, generation.stop_strings)
            bar.update(len(batch))
    return outputs  # type: ignore[return-value]
