"""Sample packing: several rows share one sequence, and none sees another.

Rows are placed first-fit decreasing (longest first, each into the first pack with room) into packs of at most
`capacity` tokens and `max_sequences_per_pack` rows. Each row's position ids restart at 0 and the batch carries no
2D attention mask: transformers (5.x, `masking_utils.find_packed_sequence_indices`) reads a restart of the position
ids as a new sequence and builds a block-diagonal causal mask from them, exact with eager and SDPA attention, and
the flash-attention varlen path on a GPU uses the same position ids. A pack's padding forms one more segment of its
own (positions 0, 1, ...), so no real token attends to it. transformers reads the position ids only without a
cache: the forward pass must be called with `use_cache=False` (with a cache, even an empty one made because the
model's config says `use_cache`, it builds a plain causal mask and rows would see each other).

Loss masks stay per row: a row's first label is ignored, as the causal shift ignores it in an unpacked batch
(otherwise the previous row's last token would be trained to predict it), so a packed batch scores exactly the
tokens the unpacked one does.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from ludwig_llm.data.tokenize import IGNORE_INDEX


def first_fit_decreasing(lengths: Sequence[int], capacity: int, max_sequences_per_pack: Optional[int] = None) -> List[List[int]]:
    """Indices into `lengths`, grouped into packs of at most `capacity` tokens (and `max_sequences_per_pack` rows).

    A row longer than `capacity` gets a pack of its own. Deterministic: the same lengths give the same packs on
    every worker."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: List[List[int]] = []
    room: List[int] = []
    for index in order:
        for slot, free in enumerate(room):
            full = max_sequences_per_pack is not None and len(packs[slot]) >= max_sequences_per_pack
            if not full and lengths[index] <= free:
                packs[slot].append(index)
                room[slot] -= lengths[index]
                break
        else:
            packs.append([index])
            room.append(capacity - lengths[index])
    return packs


class PackingCollator:
    """Makes the tensors of a list of packs, each a list of rows (dicts with `input_ids` and `labels`).

    Gives `input_ids`, `labels` and `position_ids`, padded on the right to the longest pack; no `attention_mask`
    (see the module's docstring)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, packs: Sequence[Sequence[Dict[str, Sequence[int]]]]) -> Dict[str, torch.Tensor]:
        sequences = [self._pack(rows) for rows in packs]
        length = max(len(ids) for ids, _, _ in sequences)
        batch: Dict[str, List[List[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
        for ids, labels, positions in sequences:
            padding = length - len(ids)
            batch["input_ids"].append(ids + [self.pad_token_id] * padding)
            batch["labels"].append(labels + [IGNORE_INDEX] * padding)
            batch["position_ids"].append(positions + list(range(padding)))
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}

    @staticmethod
    def _pack(rows: Sequence[Dict[str, Sequence[int]]]):
        ids: List[int] = []
        labels: List[int] = []
        positions: List[int] = []
        for row in rows:
            ids.extend(row["input_ids"])
            labels.append(IGNORE_INDEX)  # see the module's docstring
            labels.extend(row["labels"][1:])
            positions.extend(range(len(row["input_ids"])))
        return ids, labels, positions
