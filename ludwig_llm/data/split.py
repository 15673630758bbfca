"""Sampling and splitting a table into train / validation / test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np
import pandas as pd

from ludwig_llm.errors import UserError

SPLIT_NAMES = ("train", "validation", "test")
# Values a fixed split column may hold, compared as lower-case text ("0", "0.0", "train" ...).
_SPLIT_VALUE_CODES = {
    "0": 0, "train": 0, "training": 0,
    "1": 1, "validation": 1, "valid": 1, "val": 1, "dev": 1,
    "2": 2, "test": 2,
}


@dataclass
class Splits:
    """The three splits; each has a fresh 0..n-1 index and keeps the rows' original order."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def items(self) -> Iterator[Tuple[str, pd.DataFrame]]:
        return iter(zip(SPLIT_NAMES, (self.train, self.validation, self.test)))

    def sizes(self) -> dict:
        return {name: len(df) for name, df in self.items()}


def sample_table(df: pd.DataFrame, preprocessing) -> pd.DataFrame:
    """``df`` reduced to ``preprocessing.sample_size`` rows, or else a ``sample_ratio`` fraction, drawn with ``split_seed``.

    The sampled rows keep their original order (and index), so a later fixed split still lines up.
    """
    size: Optional[int] = preprocessing.sample_size
    if size is None:
        if preprocessing.sample_ratio >= 1.0:
            return df
        size = max(1, round(len(df) * preprocessing.sample_ratio))
    if size >= len(df):
        return df
    chosen = np.random.RandomState(preprocessing.split_seed).choice(len(df), size=size, replace=False)
    return df.iloc[np.sort(chosen)]


def split_table(df: pd.DataFrame, preprocessing) -> Splits:
    """Split ``df`` by ``preprocessing.split``: random (``probabilities``, ``split_seed``) or fixed (a column)."""
    split = preprocessing.split
    if split.type == "fixed":
        codes = _fixed_split_codes(df, split.column)
    else:
        codes = _random_split_codes(len(df), split.probabilities, preprocessing.split_seed)
    return Splits(*(df[codes == code].reset_index(drop=True) for code in range(3)))


def _random_split_codes(rows: int, probabilities, seed: int) -> np.ndarray:
    # Exact counts (rounded cumulative fractions) rather than one coin flip per row: 1000 rows at
    # 0.8/0.1/0.1 give exactly 800/100/100, and a small dataset never loses its validation rows by chance.
    bounds = np.round(np.cumsum(probabilities) * rows).astype(int)
    bounds[-1] = rows
    by_position = np.zeros(rows, dtype=int)
    by_position[bounds[0]:bounds[1]] = 1
    by_position[bounds[1]:] = 2
    codes = np.empty(rows, dtype=int)
    codes[np.random.RandomState(seed).permutation(rows)] = by_position
    return codes


def _fixed_split_codes(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        raise UserError(
            f"preprocessing.split is 'fixed' but the dataset has no column '{column}' "
            f"(set preprocessing.split.column; columns are: {', '.join(map(str, df.columns))})."
        )
    codes = np.empty(len(df), dtype=int)
    for row, value in enumerate(df[column].tolist()):
        code = _SPLIT_VALUE_CODES.get(_normalise(value))
        if code is None:
            raise UserError(
                f"split column '{column}', row {row} (counting from 0): {value!r} is not a split; "
                "use 0 or 'train', 1 or 'validation', 2 or 'test'."
            )
        codes[row] = code
    return codes


def _normalise(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return ""  # True/False are not splits, even though True == 1
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text
    # 1.0 (a float column, or CSV text written from one) means 1
    return str(int(number)) if number.is_integer() else text


def splits_from_sets(
    training_set: Optional[pd.DataFrame], validation_set: Optional[pd.DataFrame], test_set: Optional[pd.DataFrame]
) -> Splits:
    """Separate tables as the three splits; a missing one becomes an empty table with the same columns."""
    given = [t for t in (training_set, validation_set, test_set) if t is not None]
    if not given:
        raise ValueError("splits_from_sets needs at least one table.")
    template = given[0]

    def table(df: Optional[pd.DataFrame]) -> pd.DataFrame:
        return template.iloc[0:0].reset_index(drop=True) if df is None else df.reset_index(drop=True)

    return Splits(table(training_set), table(validation_set), table(test_set))
