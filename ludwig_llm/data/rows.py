"""Rows whose input is empty or missing: refused with their count and first row numbers, or dropped and counted.
Cells longer than preprocessing.max_cell_characters: refused the same way, column by column.

A row with no input text trains the model to answer an empty prompt and, at prediction, generates from
one; both are silent mistakes, so the default is an error and `preprocessing.empty_inputs: drop` is the
explicit way out.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ludwig_llm.data.prompt import cell_text
from ludwig_llm.data.split import Splits
from ludwig_llm.errors import UserError

ERROR, DROP = "error", "drop"
MODES = (ERROR, DROP)
SHOWN_ROWS = 5
DROPPED_STAT = "dropped_empty_input_rows"
FLAG_SUFFIX = "_empty_input"  # prediction column flagging rows predicted as empty because their input was


def empty_input_mask(df: pd.DataFrame, column: Union[str, Sequence[str]]) -> np.ndarray:
    """True where the input cell is missing (NaN/None, or an absent JSON key) or only whitespace; given several
    columns (a template that reads the row through its columns), where all of them are."""
    columns = [column] if isinstance(column, str) else list(column)
    masks = [np.array([not cell_text(value).strip() for value in df[name].tolist()], dtype=bool) for name in columns]
    return np.logical_and.reduce(masks)


def _input_columns_text(column: Union[str, Sequence[str]]) -> str:
    if isinstance(column, str):
        return f"column '{column}' (the input feature) is"
    return "columns " + ", ".join(f"'{name}'" for name in column) + " (named in prompt.template) are all"


def describe_rows(mask: np.ndarray) -> str:
    positions = np.flatnonzero(mask)
    shown = ", ".join(str(int(p)) for p in positions[:SHOWN_ROWS])
    more = f" and {len(positions) - SHOWN_ROWS} more" if len(positions) > SHOWN_ROWS else ""
    return f"{len(positions)} row(s): {shown}{more} (counting from 0)"


def refuse_empty_inputs(df: pd.DataFrame, name: str, column: Union[str, Sequence[str]]) -> None:
    """UserError when any row of `df` has an empty input, naming `name`, the column(s), the count and the first rows."""
    mask = empty_input_mask(df, column)
    if mask.any():
        raise UserError(f"{name}: {_input_columns_text(column)} empty or missing in {describe_rows(mask)}; "
                        f"fill or remove those rows, or set preprocessing.empty_inputs: {DROP} to leave them out.")


def cell_length(value: Any) -> int:
    """Characters of a cell as the data pipeline reads it: text as is, a list or dict (chat turns) as JSON, missing as 0."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "tolist"):  # Parquet and hub lists arrive as arrays
        return len(json.dumps(value, default=lambda item: item.tolist() if hasattr(item, "tolist") else str(item)))
    return len(cell_text(value))


def refuse_long_cells(df: pd.DataFrame, name: str, limit: Optional[int]) -> None:
    """UserError when a cell of any text or list column of `df` has more than `limit` characters (None: no limit),
    naming `name`, the column, the count, the first rows and the longest cell.

    Refused rather than cut: a giant cell is rendered and tokenized whole before max_sequence_length truncates
    it, so it costs memory and time, and a silent cut would hide a broken row (a whole file pasted in one cell)."""
    if limit is None:
        return
    for column in df.columns:
        if pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_datetime64_any_dtype(df[column]):
            continue  # numbers and dates print short
        lengths = np.fromiter((cell_length(value) for value in df[column].tolist()), dtype=np.int64, count=len(df))
        mask = lengths > limit
        if mask.any():
            raise UserError(f"{name}: column '{column}' has a cell longer than preprocessing.max_cell_characters ({limit}) "
                            f"in {describe_rows(mask)}, the longest {int(lengths.max())} characters; shorten or remove those rows, "
                            f"or raise preprocessing.max_cell_characters (null: no limit).")


def drop_empty_inputs(splits: Splits, column: Union[str, Sequence[str]]) -> Tuple[Splits, Dict[str, int]]:
    """The splits without rows of empty input, and how many each split lost."""
    kept, dropped = {}, {}
    for split, df in splits.items():
        mask = empty_input_mask(df, column)
        kept[split] = df[~mask].reset_index(drop=True)
        dropped[split] = int(mask.sum())
    return Splits(kept["train"], kept["validation"], kept["test"]), dropped


def with_flagged_empty(kept: pd.DataFrame, mask: np.ndarray, flag_column: str) -> pd.DataFrame:
    """Predictions for every row: `kept` (those of the rows where `mask` is False, in order) with an empty
    prediction (empty text, missing numbers) at the rows of empty input, and `flag_column` True there."""
    kept = kept.set_axis(np.flatnonzero(~mask), axis=0)
    full = kept.reindex(range(len(mask)))
    for column in full.columns:
        if len(kept) == 0 or not pd.api.types.is_numeric_dtype(kept[column]):  # text: empty; numbers stay missing
            full[column] = full[column].astype(object).where(~mask, "")
    full[flag_column] = mask
    return full
