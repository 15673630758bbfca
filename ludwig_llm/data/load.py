"""Reading a dataset into a pandas DataFrame: files, `save_to_disk` directories, hub ids, DataFrames.

Every failure is a UserError that names what was being read (``dataset``, ``training set``...) and
the path or id, so the CLI can print one clear line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, Union

import datasets
import pandas as pd

from ludwig_llm.data.hub import is_hub_reference, load_hub_reference
from ludwig_llm.data.strict_read import TableFormatError, check_unique_columns, check_unique_header, read_json_lines
from ludwig_llm.errors import UserError

Source = Union[str, "os.PathLike[str]", pd.DataFrame]

# A hub dataset's (or a saved DatasetDict's) split names -> the 0/1/2 of a fixed split column.
SPLIT_COLUMN = "split"
SPLIT_NAME_CODES = {"train": 0, "training": 0, "validation": 1, "valid": 1, "val": 1, "dev": 1, "test": 2}


def _read_delimited(path: str, sep: str) -> pd.DataFrame:
    # Everything is read as text, and only empty cells are missing: pandas' defaults would turn
    # answers such as "NA", "None" or "null" into NaN, and "007" into 7.
    check_unique_header(path, sep)
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])


def _read_json(path: str) -> pd.DataFrame:
    # `.json` is usually a list of records but is sometimes JSON Lines; try both before giving up.
    try:
        return pd.read_json(path, orient="records", dtype=False)
    except ValueError:
        return read_json_lines(path)


READERS: Dict[str, Callable[[str], pd.DataFrame]] = {
    ".csv": lambda path: _read_delimited(path, ","),
    ".tsv": lambda path: _read_delimited(path, "\t"),
    ".json": _read_json,
    ".jsonl": read_json_lines,
    ".parquet": pd.read_parquet,
}
FORMAT_NAMES = {".csv": "CSV", ".tsv": "TSV", ".json": "JSON", ".jsonl": "JSON Lines", ".parquet": "Parquet"}


def supported_formats() -> str:
    return ", ".join(sorted(READERS)) + ", or a directory saved with datasets' save_to_disk"


def source_name(source: Source, what: str = "dataset") -> str:
    """How messages name a source: ``training set 'train.csv'``, ``dataset (DataFrame)``."""
    return f"{what} (DataFrame)" if isinstance(source, pd.DataFrame) else f"{what} '{os.fspath(source)}'"


def load_table(source: Source, *, what: str = "dataset") -> pd.DataFrame:
    """The rows of ``source`` as a DataFrame (a DataFrame given is copied, never changed in place).

    ``source`` is a path to a CSV/TSV/JSON/JSONL/Parquet file, a directory written by
    ``datasets``' ``save_to_disk``, a Hugging Face dataset id, an ``hf://`` reference with
    load_dataset options (see `data.hub`), or a DataFrame. ``what`` names the
    source in error messages (``"training set"`` ...).
    """
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        name = f"{what} (DataFrame)"
    else:
        path = os.fspath(source)
        name = f"{what} '{path}'"
        if is_hub_reference(path):  # hf://<id or directory>?subset=...&split=...: datasets.load_dataset with options
            df = _hf_to_pandas(load_hub_reference(path, name), name)
        elif os.path.isdir(path):
            df = _load_saved_dataset(path, name)
        elif os.path.exists(path):
            df = _load_file(path, name)
        elif _looks_like_a_path(path):
            raise UserError(f"{name}: file not found.")
        else:
            name = f"{what} '{path}' (Hugging Face dataset id)"
            df = _load_hub_dataset(path, name)
    try:
        check_unique_columns(df)
    except TableFormatError as error:
        raise UserError(f"{name}: {error}") from None
    if len(df.columns) == 0 or len(df) == 0:
        raise UserError(f"{name} is empty: it has no rows{'' if len(df.columns) else ' and no columns'}.")
    return df.reset_index(drop=True)


def _looks_like_a_path(text: str) -> bool:
    # Hub ids are `name` or `owner/name`; anything with a known extension, a path separator
    # at the start, or more than one slash was meant as a file.
    extension = os.path.splitext(text)[1].lower()
    return (
        extension in READERS
        or text.startswith((".", "/", "~", "\\"))
        or text.count("/") > 1
        or os.sep in text and os.sep != "/"
    )


def _load_file(path: str, name: str) -> pd.DataFrame:
    extension = os.path.splitext(path)[1].lower()
    reader = READERS.get(extension)
    if reader is None:
        raise UserError(f"{name}: unknown file type '{extension or '(no extension)'}'; supported: {supported_formats()}.")
    try:
        return reader(path)
    except TableFormatError as error:
        raise UserError(f"{name}: unreadable file, not valid {FORMAT_NAMES[extension]}: {error}") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{name} is empty: it has no rows and no columns.") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, ImportError) as error:
        raise UserError(f"{name}: unreadable file, not valid {FORMAT_NAMES[extension]}: {_first_line(error)}") from None
    except Exception as error:  # pyarrow raises its own exception types for corrupt Parquet files
        raise UserError(f"{name}: unreadable file: {_first_line(error)}") from None


def _load_saved_dataset(path: str, name: str) -> pd.DataFrame:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any(os.path.exists(os.path.join(path, marker)) for marker in markers):
        raise UserError(f"{name} is a directory but not a dataset saved with datasets' save_to_disk (no {' or '.join(markers)}).")
    try:
        loaded = datasets.load_from_disk(path)
    except Exception as error:
        raise UserError(f"{name}: unreadable saved dataset: {_first_line(error)}") from None
    return _hf_to_pandas(loaded, name)


def _load_hub_dataset(dataset_id: str, name: str) -> pd.DataFrame:
    try:
        loaded = datasets.load_dataset(dataset_id)
    except Exception as error:
        raise UserError(
            f"{name}: not a local file or directory, and loading it from the Hugging Face hub failed: {_first_line(error)}"
        ) from None
    return _hf_to_pandas(loaded, name)


def _hf_to_pandas(loaded: Any, name: str) -> pd.DataFrame:
    """A Dataset as is; a DatasetDict's splits concatenated, with a `split` column (0/1/2) when they have known names."""
    if not hasattr(loaded, "keys"):
        return loaded.to_pandas()
    known = [split for split in loaded.keys() if split in SPLIT_NAME_CODES]
    if not known:
        # Unrecognised split names only: the rows are one pool for preprocessing.split to divide.
        return pd.concat([loaded[split].to_pandas() for split in loaded.keys()], ignore_index=True)
    skipped = [split for split in loaded.keys() if split not in SPLIT_NAME_CODES]
    if skipped:
        logging.getLogger(__name__).warning("%s: ignoring split(s) %s (only train/validation/test are used).", name, ", ".join(skipped))
    frames = []
    for split in known:
        frame = loaded[split].to_pandas()
        if SPLIT_COLUMN not in frame.columns:  # never overwrite a column the data already has
            frame[SPLIT_COLUMN] = SPLIT_NAME_CODES[split]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def data_fingerprint(df: pd.DataFrame) -> str:
    """A content hash of ``df`` (column names, dtypes and values; not the index), stable across runs and machines."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(df[c].dtype)] for c in df.columns]).encode())
    digest.update(str(len(df)).encode())
    for column in df.columns:
        values = df[column]
        try:
            hashes = pd.util.hash_pandas_object(values, index=False)
        except TypeError:
            # Cells holding lists or dicts (JSON, hub datasets) are not hashable; their repr is stable.
            hashes = pd.util.hash_pandas_object(values.map(repr), index=False)
        digest.update(hashes.to_numpy().tobytes())
    return digest.hexdigest()
