"""Preprocessing section: dataset splitting and sampling."""

from __future__ import annotations

from typing import Any, List, Optional

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option, typed_union
from ludwig_llm.schema.registry import split_registry


class BaseSplitConfig(BaseConfig):
    """Common to every split type."""


def _check_probabilities(value: List[float]) -> List[float]:
    from marshmallow import ValidationError

    if len(value) != 3:
        raise ValidationError(f"needs 3 numbers (train, validation, test), got {len(value)}.")
    if abs(sum(value) - 1.0) > 1e-6:
        raise ValidationError(f"must sum to 1, got {sum(value):g}.")
    return value


@split_registry.register("random")
@config_class
class RandomSplitConfig(BaseSplitConfig):
    """Assigns each row to train, validation or test at random, with the given probabilities."""

    title = "Random split"

    type: str = option("random", "Split type.", choices=["random"], impact=Impact.HIGH)
    probabilities: List[float] = option(
        [0.8, 0.1, 0.1], "Fractions of rows for train, validation and test; they must sum to 1.",
        min=0.0, max=1.0, validate=_check_probabilities, impact=Impact.MEDIUM,
    )


@split_registry.register("fixed")
@config_class
class FixedSplitConfig(BaseSplitConfig):
    """Reads each row's split from a column: 0/1/2 or train/validation/test."""

    title = "Fixed split"

    type: str = option("fixed", "Split type.", choices=["fixed"], impact=Impact.HIGH)
    column: str = option("split", "Column holding the split of each row: 0 or `train`, 1 or `validation`, 2 or `test`.", impact=Impact.MEDIUM)


@config_class
class PreprocessingConfig(BaseConfig):
    """How the dataset is split and sampled before training."""

    title = "Preprocessing"
    split: Any = typed_union(
        split_registry, RandomSplitConfig,
        "How rows are split into train, validation and test. Ignored when separate training/validation/test sets are given.",
        impact=Impact.MEDIUM,
    )
    split_seed: int = option(42, "Seed of the random split, so the same rows land in the same split every run.", impact=Impact.LOW)
    global_max_sequence_length: Optional[int] = option(
        None, "Most tokens of prompt plus target together; longer rows are cut (prompt from the left, target from the right). Null: only the per-feature limits apply.",
        min=2, impact=Impact.MEDIUM,
    )
    train_on_inputs: bool = option(
        False, "Also compute the loss on the prompt tokens. Off: the loss covers only the target (prompt labels are masked).",
        impact=Impact.MEDIUM,
    )
    sample_ratio: float = option(1.0, "Fraction of the dataset's rows used, sampled with `split_seed`.", min=0.0, max=1.0, min_inclusive=False, impact=Impact.LOW)
    sample_size: Optional[int] = option(None, "Exact number of rows used; when set, replaces `sample_ratio`.", min=1, impact=Impact.LOW)
    empty_inputs: str = option(
        "error", "Rows whose input feature is empty or missing: `error` refuses the dataset, naming the count and the first rows; "
        "`drop` leaves them out of training (counted as `dropped_empty_input_rows` in the statistics) and gives them an empty "
        "prediction flagged in a `<output>_empty_input` column.",
        choices=["error", "drop"], impact=Impact.MEDIUM,
    )
    max_cell_characters: Optional[int] = option(
        1_000_000, "Most characters in one cell of the dataset (any column; a list cell such as a chat is measured as JSON). "
        "A longer cell is refused, naming its column and first rows, at training and at prediction: cells are rendered and "
        "tokenized whole before `max_sequence_length` cuts them, so a giant one costs memory and time for tokens that are "
        "thrown away. Raise it for genuinely long documents; null: no limit.",
        min=1, impact=Impact.LOW,
    )
    cache: bool = option(True, "Cache the tokenized dataset and reuse it while the data, tokenizer and this section are unchanged.", impact=Impact.LOW)
