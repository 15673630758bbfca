"""The `grpo` trainer's rewards: the registered reward types' scoring classes (see ludwig_llm/schema/rewards.py),
and the functions the Python API passes (`LudwigLLM.train(rewards=[fn])`).

Every reward is called as `reward(completions, rows) -> [float]`: the cleaned completion texts and the dataset rows
(column -> cell) they answer, one number per completion.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import pandas as pd

from ludwig_llm.data.prompt import cell_text
from ludwig_llm.errors import UserError
from ludwig_llm.schema.registry import load_implementation

_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def last_number(text: str) -> Optional[float]:
    """The last number written in `text` (thousands separators allowed: `1,234.5`), or None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


class ExactMatchReward:
    def __init__(self, config, output_column: str):
        self.column = config.reference_column(output_column)
        self.ignore_case = config.ignore_case

    def _normal(self, text: str) -> str:
        text = text.strip()
        return text.lower() if self.ignore_case else text

    def __call__(self, completions: Sequence[str], rows: Sequence[dict]) -> List[float]:
        return [float(self._normal(c) == self._normal(cell_text(row[self.column]))) for c, row in zip(completions, rows)]


class RegexReward:
    def __init__(self, config, output_column: str):
        pattern = re.compile(config.pattern)
        self.match = pattern.fullmatch if config.full_match else pattern.search

    def __call__(self, completions: Sequence[str], rows: Sequence[dict]) -> List[float]:
        return [float(self.match(c) is not None) for c in completions]


class NumericAnswerReward:
    def __init__(self, config, output_column: str):
        self.column = config.reference_column(output_column)
        self.tolerance = config.tolerance

    def __call__(self, completions: Sequence[str], rows: Sequence[dict]) -> List[float]:
        scores = []
        for completion, row in zip(completions, rows):
            answer, reference = last_number(completion), last_number(cell_text(row[self.column]))
            scores.append(float(answer is not None and abs(answer - reference) <= self.tolerance))
        return scores


class LengthPenaltyReward:
    def __init__(self, config, output_column: str):
        self.limit = config.max_characters

    def __call__(self, completions: Sequence[str], rows: Sequence[dict]) -> List[float]:
        return [-max(0, len(c) - self.limit) / self.limit for c in completions]


@dataclass
class Reward:
    name: str  # its statistics are `reward_<name>`
    weight: float
    score: Callable[[Sequence[str], Sequence[dict]], List[float]]
    where: str  # the config path or the function, for error messages

    def __call__(self, completions: Sequence[str], rows: Sequence[dict]) -> List[float]:
        scores = self.score(list(completions), list(rows))
        try:
            scores = [float(s) for s in scores]
        except (TypeError, ValueError):
            raise UserError(f"{self.where} must return one number per completion, got {str(scores)[:200]}.") from None
        if len(scores) != len(completions):
            raise UserError(f"{self.where} returned {len(scores)} scores for {len(completions)} completions; it must return one per completion.")
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        if bad:
            raise UserError(f"{self.where} returned {scores[bad[0]]} for completion {completions[bad[0]]!r}; rewards must be finite numbers.")
        return scores


def build_rewards(config, functions: Sequence[Callable] = ()) -> List[Reward]:
    """The configured reward types, then the API's functions (weight 1), with unique statistic names."""
    output_column, rewards, names = config.output_feature.column_name(), [], set()

    def unique(name: str) -> str:
        candidate, number = name, 2
        while candidate in names:
            candidate, number = f"{name}_{number}", number + 1
        names.add(candidate)
        return candidate

    for index, reward in enumerate(config.trainer.rewards):
        scorer = load_implementation(reward)(reward, output_column)
        rewards.append(Reward(unique(reward.type), reward.weight, scorer, f"trainer.rewards[{index}] ({reward.type})"))
    for index, function in enumerate(functions):
        if not callable(function):
            raise UserError(f"rewards[{index}] passed to train() is not callable: {function!r}; give functions fn(completions, rows) -> [float].")
        name = getattr(function, "__name__", "")
        name = name if name.isidentifier() else f"function_{index}"
        rewards.append(Reward(unique(name), 1.0, function, f"reward function '{name}' (rewards[{index}] of train())"))
    if not rewards:
        raise UserError("trainer.rewards: the grpo trainer needs at least one reward to score its completions: list reward "
                        "types (exact_match, regex, numeric_answer, length_penalty) under trainer.rewards, or pass "
                        "functions with LudwigLLM(config).train(dataset, rewards=[fn]).")
    return rewards


def check_reward_columns(df: pd.DataFrame, split: str, config) -> None:
    """Refuse a split without the columns the rewards compare against, or with cells they cannot read (row named)."""
    output_column = config.output_feature.column_name()
    for index, reward in enumerate(config.trainer.rewards):
        column = reward.reference_column(output_column)
        if column is None:
            continue
        where = f"trainer.rewards[{index}] ({reward.type})"
        if column not in df.columns:
            raise UserError(f"{where} compares against column '{column}', which the {split} split does not have; its columns "
                            f"are: {', '.join(map(str, df.columns))}.")
        cells = [cell_text(v) for v in df[column].tolist()]
        empty = [i for i, text in enumerate(cells) if not text.strip()]
        if empty:
            raise UserError(f"{where}: the reference answer in column '{column}' is empty in {split} row {empty[0]} (counting from 0).")
        if reward.type == "numeric_answer":
            bad = [i for i, text in enumerate(cells) if last_number(text) is None]
            if bad:
                raise UserError(f"{where}: the reference in column '{column}' has no number in {split} row {bad[0]} "
                                f"(counting from 0): {cells[bad[0]][:80]!r}.")
