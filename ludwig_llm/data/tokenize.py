"""Model input text + target -> token ids and labels; padding and length-grouped batching.

Special tokens, decided once here for training and generation alike:

* Prompt, plain text: the tokenizer's own leading special tokens (e.g. Llama's BOS) are added,
  exactly as ``tokenizer(prompt)`` would, but never its trailing ones (a tokenizer configured to
  append EOS would otherwise end the prompt before the answer). A prompt whose text already
  starts with the BOS token gets no second one.
* Prompt, chat template (``prompt.apply_chat_template``): the rendered chat text is tokenized
  with no added special tokens, as ``tokenizer.apply_chat_template(tokenize=True)`` does: chat
  templates write their own BOS (``{{ bos_token }}``) when the model wants one.
* Target: tokenized with no special tokens, then EOS appended, so the model learns to stop.

Prompt and target are tokenized separately and concatenated, so the loss mask falls exactly on
the target's tokens and generation is fed exactly the prompt tokens training saw.

Truncation: the prompt keeps its end (cut from the left, after any leading BOS), the target its
start (EOS always kept), then ``preprocessing.global_max_sequence_length`` bounds the sum.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm
from transformers.trainer_pt_utils import DistributedLengthGroupedSampler

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss skips (torch's CrossEntropyLoss default)
_CHUNK = 1000  # rows tokenized per call: large enough for the fast tokenizer's batching, small for a live progress bar


@dataclass
class EncodingStats:
    rows: int = 0
    truncated_prompt_rows: int = 0
    truncated_target_rows: int = 0
    truncated_turn_rows: int = 0  # conversations that lost their oldest turns to fit (chat inputs)
    dropped_rows: int = 0  # rows left with no token carrying loss (e.g. no EOS token and an empty target)

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)


@dataclass
class EncodedRows:
    """Encoded training rows: ``examples[i]`` is ``{"input_ids": [...], "labels": [...]}``.

    A map-style dataset (``len``, indexing) that a torch DataLoader takes as is; ``row_numbers[i]``
    is the position of ``examples[i]`` in the table it was encoded from (dropped rows are skipped).
    """

    examples: List[Dict[str, List[int]]] = field(default_factory=list)
    stats: EncodingStats = field(default_factory=EncodingStats)
    row_numbers: List[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Dict[str, List[int]]:
        return self.examples[index]

    def __iter__(self) -> Iterator[Dict[str, List[int]]]:
        return iter(self.examples)

    def lengths(self) -> List[int]:
        return [len(example["input_ids"]) for example in self.examples]


# --- special tokens ---------------------------------------------------------------------------


def leading_special_ids(tokenizer) -> List[int]:
    """The special tokens ``tokenizer(text)`` puts before the text (e.g. ``[bos_id]``); found by comparing with and without."""
    probe = "a"
    with_special = tokenizer(probe, add_special_tokens=True)["input_ids"]
    without = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(without) + 1):
        if with_special[start:start + len(without)] == without:
            return list(with_special[:start])
    return []


def _tokenize(texts: Sequence[str], tokenizer) -> List[List[int]]:
    if not texts:
        return []
    # verbose=False: the "longer than the model's maximum" warning is moot, truncation is ours.
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]


def _chunks(items: Sequence, progress: Optional[object]) -> Iterator[Tuple[int, Sequence]]:
    for start in range(0, len(items), _CHUNK):
        chunk = items[start:start + _CHUNK]
        yield start, chunk
        if progress is not None:
            progress.update(len(chunk))


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled or total == 0:
        return None
    return tqdm(total=total, desc=description, unit="rows", leave=False)


# --- prompts ----------------------------------------------------------------------------------


class _PromptEncoder:
    """Prompt tokenization shared by training and generation."""

    def __init__(self, tokenizer, config):
        self.chat = bool(config.prompt.apply_chat_template)
        self.prefix = [] if self.chat else leading_special_ids(tokenizer)
        self.bos_id = tokenizer.bos_token_id
        self.max_length = config.input_feature.preprocessing.max_sequence_length

    def split(self, body: List[int]) -> Tuple[List[int], List[int]]:
        """(leading special tokens, the rest): a leading BOS stays put when the prompt is cut from the left."""
        prefix = list(self.prefix)
        if body and self.bos_id is not None and body[0] == self.bos_id:
            prefix, body = [self.bos_id], body[1:]  # written by the chat template or the user: no second BOS
        return prefix, body

    def encode(self, body: List[int], max_length: Optional[int] = None) -> Tuple[List[int], List[int], bool]:
        """(leading special tokens, the rest) cut to the feature's limit and ``max_length``, and whether it was cut."""
        prefix, rest = self.split(body)
        return _cut_left(prefix, rest, [m for m in (self.max_length, max_length) if m is not None])


def _cut_left(prefix: List[int], rest: List[int], limits: Sequence[int]) -> Tuple[List[int], List[int], bool]:
    """Keep ``prefix`` and the end of ``rest`` within the smallest of ``limits``."""
    if not limits or len(prefix) + len(rest) <= min(limits):
        return prefix, rest, False
    limit = min(limits)
    if limit <= len(prefix):
        return prefix[:limit], [], True
    return prefix, rest[len(rest) - (limit - len(prefix)):], True


def encode_prompts(prompts: Sequence[str], tokenizer, config, *, return_truncated: bool = False, progress: bool = False):
    """Token ids of model input texts for generation, tokenized and truncated exactly as in training.

    ``prompts`` are model input texts (`prompt.model_input_text` / `prompt.prompt_texts`). With
    ``preprocessing.global_max_sequence_length`` set, prompts also keep room for one generated token.
    Returns ``list[list[int]]``, or ``(ids, truncated_row_count)`` with ``return_truncated``.
    """
    encoder = _PromptEncoder(tokenizer, config)
    global_max = config.preprocessing.global_max_sequence_length
    limit = None if global_max is None else global_max - 1
    ids, truncated = [], 0
    bar = _progress_bar(len(prompts), "tokenizing prompts", progress)
    for _, chunk in _chunks(list(prompts), bar):
        for body in _tokenize(chunk, tokenizer):
            prefix, rest, cut = encoder.encode(body, limit)
            ids.append(prefix + rest)
            truncated += cut
    if bar is not None:
        bar.close()
    return (ids, truncated) if return_truncated else ids


# --- training rows ----------------------------------------------------------------------------


def _fit_global(prompt_len: int, target_len: int, global_max: int) -> Tuple[int, int]:
    """Lengths (prompt, target) that fit ``global_max`` together.

    The prompt is cut first, but not below half the budget: a long prompt with a long answer keeps
    both halves, rather than an answer with no question.
    """
    if prompt_len + target_len <= global_max:
        return prompt_len, target_len
    prompt_keep = max(global_max - target_len, min(prompt_len, global_max // 2))
    return prompt_keep, global_max - prompt_keep


def encode_for_training(
    prompts: Sequence[str], targets: Sequence[str], tokenizer, config, *, progress: bool = False, description: str = "tokenizing"
) -> EncodedRows:
    """Rows of ``input_ids`` = prompt + target + EOS, with ``labels`` = -100 over the prompt (unless
    ``preprocessing.train_on_inputs``), truncated to the configured lengths; see the module docstring.
    """
    prompts, targets = list(prompts), list(targets)
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets.")
    encoder = _PromptEncoder(tokenizer, config)
    target_max = getattr(getattr(config.output_feature, "preprocessing", None), "max_sequence_length", None)
    global_max = config.preprocessing.global_max_sequence_length
    train_on_inputs = config.preprocessing.train_on_inputs
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    if not eos:
        logger.warning("the tokenizer has no end-of-sequence token: targets are not terminated, so generation may not stop.")

    result = EncodedRows()
    stats = result.stats
    bar = _progress_bar(len(prompts), description, progress)
    for start, prompt_chunk in _chunks(prompts, bar):
        target_chunk = targets[start:start + len(prompt_chunk)]
        for offset, (body, target) in enumerate(zip(_tokenize(prompt_chunk, tokenizer), _tokenize(target_chunk, tokenizer))):
            stats.rows += 1
            prefix, rest, prompt_cut = encoder.encode(body)
            target_cut = target_max is not None and len(target) > target_max
            if target_cut:
                target = target[:target_max]
            if global_max is not None:
                prompt_len, target_len = _fit_global(len(prefix) + len(rest), len(target) + len(eos), global_max)
                prefix, rest, cut = _cut_left(prefix, rest, [prompt_len])
                prompt_cut = prompt_cut or cut
                if target_len < len(target) + len(eos):
                    target = target[: max(0, target_len - len(eos))]
                    target_cut = True
            prompt_ids, target_ids = prefix + rest, target + eos
            if not target_ids:
                stats.dropped_rows += 1
                continue
            stats.truncated_prompt_rows += prompt_cut
            stats.truncated_target_rows += target_cut
            prompt_labels = list(prompt_ids) if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
            result.examples.append({"input_ids": prompt_ids + target_ids, "labels": prompt_labels + target_ids})
            result.row_numbers.append(start + offset)
    if bar is not None:
        bar.close()
    if stats.dropped_rows:
        logger.warning("%d row(s) dropped: no target token left to train on.", stats.dropped_rows)
    return result


# --- batching ---------------------------------------------------------------------------------


def pad_token_id_of(tokenizer) -> int:
    """The id to pad with: the pad token, else EOS (padding is masked out either way), else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


class PaddingCollator:
    """Pads a list of examples to the longest one in the batch (dynamic padding) and makes tensors.

    Examples are dicts with ``input_ids`` and optionally ``labels`` (padded with -100) and
    ``attention_mask``; other keys are ignored. ``padding_side="left"`` for generation.
    """

    def __init__(self, pad_token_id: int, padding_side: str = "right", pad_to_multiple_of: Optional[int] = None):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: use pad_token_id_of(tokenizer).")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad(self, sequence: Sequence[int], length: int, value: int) -> List[int]:
        padding = [value] * (length - len(sequence))
        return padding + list(sequence) if self.padding_side == "left" else list(sequence) + padding

    def __call__(self, examples: Sequence[Dict[str, Sequence[int]]]):
        length = max(len(example["input_ids"]) for example in examples)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": [self._pad(e["input_ids"], length, self.pad_token_id) for e in examples],
            "attention_mask": [self._pad(e.get("attention_mask") or [1] * len(e["input_ids"]), length, 0) for e in examples],
        }
        if "labels" in examples[0]:
            batch["labels"] = [self._pad(e["labels"], length, IGNORE_INDEX) for e in examples]
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def length_grouped_sampler(
    lengths: Sequence[int], batch_size: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0, drop_last: bool = False
):
    """A sampler whose consecutive ``batch_size`` indices have similar lengths, in seeded random order.

    It is transformers' ``DistributedLengthGroupedSampler`` (still in transformers 5.x): random
    mega-batches, each sorted by length, longest batch first so an out-of-memory shows at once.
    One class serves both cases: with ``num_replicas=1`` it is the single-process sampler, and
    with ``num_replicas``/``rank`` each process gets its own shard. Its order depends only on
    ``seed`` and the epoch: call ``sampler.set_epoch(epoch)`` each epoch for a new order that a
    resumed run reproduces. Use with ``DataLoader(dataset, batch_size=batch_size, sampler=...)``.
    """
    return DistributedLengthGroupedSampler(
        batch_size, lengths=list(lengths), num_replicas=num_replicas, rank=rank, seed=seed, drop_last=drop_last
    )
