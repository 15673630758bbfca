"""A category output's labels and targets: the label set, the fallback label, and what training reads.

Fine-tuning with label scoring trains the model to answer each prompt with its label's text and end-of-sequence,
tokenized as label scoring reads it after that prompt (`inference/label_scoring.py`: after a prompt ending in a
letter or punctuation the label follows a space, as a word in running text). With a classification head the row
is the prompt alone, and its class index rides on the last prompt position's label (the head reads that token).
"""

from __future__ import annotations

from typing import List, Sequence

import pandas as pd

from ludwig_llm.data.prompt import cell_text
from ludwig_llm.data.tokenize import IGNORE_INDEX, EncodedRows, encode_prompts
from ludwig_llm.errors import UserError


def category_labels(feature, train_df: pd.DataFrame) -> List[str]:
    """The label set: the config's (vocab, or the keys of decoder.match), else the training split's labels, sorted."""
    fixed = feature.label_set()
    if fixed:
        return fixed
    column = feature.column_name()
    labels = sorted({cell_text(v) for v in train_df[column].dropna()})
    fallback = feature.preprocessing.fallback_label
    if fallback is not None and fallback not in labels:
        labels = sorted(labels + [fallback])
    if len(labels) < 2:
        raise UserError(f"output feature '{feature.name}': the training split has {len(labels)} distinct label(s) in "
                        f"column '{column}'; a category needs at least 2 (or set output_features[0].vocab).")
    return labels


def category_targets(feature, labels: Sequence[str], df: pd.DataFrame, where: str) -> List[str]:
    """Each row's label; one outside `labels` becomes preprocessing.fallback_label, or (without one) a UserError
    naming the column, the unknown labels and the first row."""
    column = feature.column_name()
    known = set(labels)
    targets = [cell_text(value) for value in df[column].tolist()]
    unknown = [i for i, target in enumerate(targets) if target not in known]
    if not unknown:
        return targets
    fallback = feature.preprocessing.fallback_label
    if fallback is None:
        values = sorted({targets[i] for i in unknown})
        raise UserError(f"{where}: column '{column}' has {len(unknown)} row(s) whose label is not one of {list(labels)}: "
                        f"{values[:5]}, first at row {unknown[0]} (counting from 0); fix those rows, add the labels to the "
                        f"label set, or set output_features[0].preprocessing.fallback_label.")
    return [target if target in known else fallback for target in targets]


def _self_spaced(tokenizer) -> bool:
    # SentencePiece tokenizers with a "▁" prefix (Llama 2, Mistral) already start a word with its space.
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return bool(tokens) and tokens[0].startswith("\u2581")


def label_target_texts(prompts: Sequence[str], targets: Sequence[str], tokenizer) -> List[str]:
    """The target text of each row: its label, after a space where the prompt ends in a letter or punctuation."""
    spaced = _self_spaced(tokenizer)
    return [(" " + target) if prompt and not prompt[-1].isspace() and not spaced else target
            for prompt, target in zip(prompts, targets)]


def encode_for_classifier(prompts: Sequence[str], class_ids: Sequence[int], tokenizer, config) -> EncodedRows:
    """Rows of a classification head: the prompt's tokens, with the class index as the last position's label."""
    encoded, truncated = encode_prompts(prompts, tokenizer, config, return_truncated=True)
    examples = []
    for ids, class_id in zip(encoded, class_ids):
        examples.append({"input_ids": list(ids), "labels": [IGNORE_INDEX] * (len(ids) - 1) + [int(class_id)]})
    rows = EncodedRows(examples, row_numbers=list(range(len(examples))))
    rows.stats.rows, rows.stats.truncated_prompt_rows = len(examples), int(truncated)
    return rows


def class_indices(labels: Sequence[str], targets: Sequence[str]) -> List[int]:
    index = {label: i for i, label in enumerate(labels)}
    return [index[target] for target in targets]
