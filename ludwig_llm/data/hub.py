"""Hugging Face datasets named with options: ``hf://<id or directory>?subset=...&split=...&data_files=...``.

A plain hub id (``org/name``) still works as ``--dataset`` and loads every split. The ``hf://`` form
reaches `datasets.load_dataset` with the options below, for a hub id or a local dataset directory
(a folder of data files, or one with a loading script's data):

* ``subset``: the configuration name (``name=`` of load_dataset), e.g. ``hf://nyu-mll/glue?subset=sst2``;
* ``split``: one split (``train``, ``test[:10%]``); without it every split is loaded and the rows of
  train/validation/test get a ``split`` column for ``preprocessing.split: {type: fixed}``;
* ``data_files``: files or globs inside the dataset, comma-separated;
* ``data_dir`` and ``revision``: passed as they are.
"""

from __future__ import annotations

from typing import Dict, Tuple
from urllib.parse import parse_qsl

import datasets

from ludwig_llm.errors import UserError

PREFIX = "hf://"
OPTIONS = {"subset": "name", "split": "split", "data_files": "data_files", "data_dir": "data_dir", "revision": "revision"}


def is_hub_reference(text: str) -> bool:
    return text.startswith(PREFIX)


def parse_hub_reference(text: str) -> Tuple[str, Dict[str, object]]:
    """(path or id, keyword arguments of load_dataset) of an ``hf://`` reference; a UserError for unknown options."""
    rest = text[len(PREFIX):]
    path, _, query = rest.partition("?")
    if not path:
        raise UserError(f"dataset '{text}': name a dataset after hf://, e.g. hf://org/name?split=train.")
    kwargs: Dict[str, object] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else []:
        if key not in OPTIONS:
            raise UserError(f"dataset '{text}': unknown option '{key}'; known: {', '.join(OPTIONS)}.")
        if not value:
            raise UserError(f"dataset '{text}': option '{key}' has no value.")
        kwargs[OPTIONS[key]] = value.split(",") if key == "data_files" and "," in value else value
    return path, kwargs


def load_hub_reference(text: str, name: str):
    """The `datasets` object an ``hf://`` reference names (a Dataset with ``split``, else a DatasetDict)."""
    path, kwargs = parse_hub_reference(text)
    try:
        return datasets.load_dataset(path, **kwargs)
    except Exception as error:
        first = (str(error).strip() or type(error).__name__).splitlines()[0]
        options = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "no options"
        raise UserError(f"{name}: datasets.load_dataset('{path}', {options}) failed: {first}") from None
