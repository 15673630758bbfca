"""Readers that name the place of a problem in a table file: the JSON Lines line, the duplicated column.

pandas reports malformed JSON Lines by character offset, keeps the last of two equal keys, and renames
the second of two equal CSV header names to `name.1`; each of these hides a problem in the user's file.
"""

from __future__ import annotations

import csv
import json
from typing import Any, Dict, List, Tuple

import pandas as pd


class TableFormatError(ValueError):
    """A table file whose content is not what its format promises; the message names the line or column."""


def read_json_lines(path: str) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); an error names the line number, counting from 1."""
    records: List[Dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"), object_pairs_hook=_unique_keys)  # so colno is on this line
            except json.JSONDecodeError as error:
                raise TableFormatError(f"line {number} is not valid JSON ({error.msg} at column {error.colno}).") from None
            except TableFormatError as error:
                raise TableFormatError(f"line {number}: {error}") from None
            if not isinstance(record, dict):
                raise TableFormatError(f"line {number} holds a JSON {type(record).__name__}, not an object of column: value pairs.")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise TableFormatError(f"key '{key}' appears twice in one object; rename one of them.")
        seen.add(key)
    return dict(pairs)


def check_unique_header(path: str, sep: str) -> None:
    """A delimited file's header names each column once (pandas would rename the second `x` to `x.1`)."""
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    seen = set()
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise TableFormatError(f"column '{name}' appears twice in the header (again as column {position}); "
                                   "rename or remove one of them.")
        seen.add(name)


def check_unique_columns(df: pd.DataFrame) -> None:
    duplicated = [str(name) for name in df.columns[df.columns.duplicated()]]
    if duplicated:
        raise TableFormatError(f"column '{duplicated[0]}' appears more than once; rename or remove the copies.")
