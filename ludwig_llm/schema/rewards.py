"""Reward types of the `grpo` trainer (`trainer.rewards`): each scores a sampled completion, times its `weight`.

A reward type is its schema class here, registered once, naming the class that scores in `implementation`
("module:attribute", loaded by `registry.load_implementation`): built as `Reward(config)`, called as
`reward(completions, rows) -> list of floats`, one per completion; `rows` are the dataset rows (column -> cell)
the completions answer. The sum of the weighted rewards is a completion's reward.
"""

from __future__ import annotations

import re
from typing import ClassVar, Optional

import marshmallow

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option
from ludwig_llm.schema.registry import Registry

reward_registry: Registry = Registry("reward type")


def _pattern(value):
    if value is not None:
        try:
            re.compile(value)
        except re.error as error:
            raise marshmallow.ValidationError(f"not a valid regular expression: {error}.") from None
    return value


class BaseRewardConfig(BaseConfig):
    """Common to every reward type."""

    # The scoring class, "module:attribute": Reward(config)(completions, rows) -> [float per completion].
    implementation: ClassVar[str]
    # The dataset column the reward reads, if any (checked against the data before training); see `reference_column`.
    reads_reference: ClassVar[bool] = False

    def reference_column(self, output_column: str) -> Optional[str]:
        """The column this reward compares against (`column`, else the output feature's), or None."""
        return (getattr(self, "column", None) or output_column) if self.reads_reference else None


_WEIGHT = "Multiplies this reward before the rewards of a completion are summed."
_COLUMN = "Column holding the reference answer of each row; null reads the output feature's column."


@reward_registry.register("exact_match")
@config_class
class ExactMatchRewardConfig(BaseRewardConfig):
    """1 when the completion equals the row's reference answer (after stripping surrounding whitespace, and case with
    `ignore_case`), else 0."""

    title = "Exact match"
    implementation = "ludwig_llm.trainers.rewards:ExactMatchReward"
    reads_reference = True
    type: str = option("exact_match", "Reward type.", choices=["exact_match"], impact=Impact.HIGH)
    weight: float = option(1.0, _WEIGHT, impact=Impact.HIGH)
    column: Optional[str] = option(None, _COLUMN, impact=Impact.HIGH)
    ignore_case: bool = option(False, "Compare without regard to upper and lower case.", impact=Impact.MEDIUM)


@reward_registry.register("regex")
@config_class
class RegexRewardConfig(BaseRewardConfig):
    """1 when the completion matches `pattern` (a format check, e.g. an answer inside tags), else 0."""

    title = "Regular expression"
    implementation = "ludwig_llm.trainers.rewards:RegexReward"
    type: str = option("regex", "Reward type.", choices=["regex"], impact=Impact.HIGH)
    weight: float = option(1.0, _WEIGHT, impact=Impact.HIGH)
    pattern: str = option(".+", "Python regular expression the completion must match.", example=r"^<answer>\d+</answer>$",
                          impact=Impact.HIGH, validate=_pattern)
    full_match: bool = option(True, "The whole completion must match (`re.fullmatch`); false: a match anywhere (`re.search`).",
                              impact=Impact.MEDIUM)


@reward_registry.register("numeric_answer")
@config_class
class NumericAnswerRewardConfig(BaseRewardConfig):
    """1 when the last number in the completion equals the row's reference number within `tolerance`, else 0 (also
    when the completion has no number). Every reference cell must hold a number."""

    title = "Numeric answer"
    implementation = "ludwig_llm.trainers.rewards:NumericAnswerReward"
    reads_reference = True
    type: str = option("numeric_answer", "Reward type.", choices=["numeric_answer"], impact=Impact.HIGH)
    weight: float = option(1.0, _WEIGHT, impact=Impact.HIGH)
    column: Optional[str] = option(None, _COLUMN, impact=Impact.HIGH)
    tolerance: float = option(1e-6, "Largest absolute difference still counted as equal.", min=0.0, impact=Impact.MEDIUM)


@reward_registry.register("length_penalty")
@config_class
class LengthPenaltyRewardConfig(BaseRewardConfig):
    """Minus the characters of the completion beyond `max_characters`, divided by `max_characters` (0 for a completion
    within the limit): discourages rambling. Give it a small `weight`."""

    title = "Length penalty"
    implementation = "ludwig_llm.trainers.rewards:LengthPenaltyReward"
    type: str = option("length_penalty", "Reward type.", choices=["length_penalty"], impact=Impact.HIGH)
    weight: float = option(0.1, _WEIGHT, impact=Impact.HIGH)
    max_characters: int = option(200, "Completions up to this many characters are not penalised.", min=1, impact=Impact.HIGH)
