"""On-disk cache of encoded splits, so an unchanged dataset is not rendered and tokenized again.

An entry is a directory ``<root>/datasets/<key>/`` with one Arrow IPC file per split and a
``meta.json`` of statistics. The key hashes everything the encoded rows depend on (see
`cache_key`); anything else changing leaves the entry valid. Entries are written to a temporary
directory and renamed into place, so a crash or a concurrent run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, Optional

import pyarrow as pa
import tokenizers
import transformers

from ludwig_llm.data.split import SPLIT_NAMES
from ludwig_llm.data.tokenize import EncodedRows, EncodingStats

# Bump when the encoding itself changes (special tokens, truncation...), so old entries are not reused.
CACHE_FORMAT_VERSION = 1
SPLITS = SPLIT_NAMES  # one file per split


CACHE_ENV_VAR = "LUDWIG_LLM_CACHE"


def cache_root() -> str:
    """``$LUDWIG_LLM_CACHE``, else ``~/.cache/ludwig_llm``: converted models and tokenized datasets live below it."""
    return os.path.expanduser(os.environ.get(CACHE_ENV_VAR) or os.path.join("~", ".cache", "ludwig_llm"))


def datasets_cache_dir() -> str:
    return os.path.join(cache_root(), "datasets")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_fingerprint(tokenizer) -> Dict[str, object]:
    """What identifies a tokenizer's output: its name, size, vocabulary, special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        vocabulary = backend.to_str()  # the whole fast tokenizer: vocabulary, merges, normalizer, post-processor
    else:
        vocabulary = json.dumps(sorted(tokenizer.get_vocab().items()))
    special = {
        "map": {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())},
        "all": [str(t) for t in getattr(tokenizer, "all_special_tokens", [])],
        "ids": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id],
    }
    return {
        # library versions: an upgrade may tokenize the same files differently
        "versions": [transformers.__version__, tokenizers.__version__],
        "class": type(tokenizer).__name__,
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "size": len(tokenizer),
        "vocabulary": _sha256(vocabulary),
        "special_tokens": _sha256(json.dumps(special, sort_keys=True)),
        "chat_template": _sha256(json.dumps(getattr(tokenizer, "chat_template", None), sort_keys=True, default=str)),
    }


def cache_key(config, tokenizer, data_fingerprint: str, retrieval: Optional[dict] = None) -> str:
    """Hash of the preprocessing, feature and prompt sections, the tokenizer, the data and the retriever.

    ``retrieval`` describes the retriever that fills ``{__context__}`` (its ``metadata()``: type, k,
    seed, embedding model...). The seed is not part of the prompt section (it comes from
    ``trainer.seed`` or ``--random_seed``) yet it picks the few-shot examples, so without it a new seed
    would reuse prompts rendered with the old examples.
    """
    parts = {
        "version": CACHE_FORMAT_VERSION,
        "preprocessing": config.preprocessing.to_dict(),
        "input_feature": config.input_feature.to_dict(),
        "output_feature": config.output_feature.to_dict(),
        "prompt": config.prompt.to_dict(),
        "retrieval": retrieval,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": data_fingerprint,
    }
    return _sha256(json.dumps(parts, sort_keys=True, default=str))[:32]


def entry_path(key: str) -> str:
    return os.path.join(datasets_cache_dir(), key)


def load_encoded(key: str) -> Optional[Dict[str, EncodedRows]]:
    """The cached splits for ``key``, or None if absent or unreadable (then it is simply rebuilt)."""
    path = entry_path(key)
    meta_path = os.path.join(path, "meta.json")
    if not os.path.exists(meta_path):
        return None
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        splits = {}
        for name in SPLITS:
            with pa.memory_map(os.path.join(path, f"{name}.arrow")) as source:
                table = pa.ipc.open_file(source).read_all()
                columns = {column: table.column(column).to_pylist() for column in ("input_ids", "labels", "row_number")}
            splits[name] = EncodedRows(
                examples=[{"input_ids": ids, "labels": labels} for ids, labels in zip(columns["input_ids"], columns["labels"])],
                stats=EncodingStats(**meta["stats"][name]),
                row_numbers=columns["row_number"],
            )
        return splits
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None


def save_encoded(key: str, splits: Dict[str, EncodedRows]) -> str:
    """Write the splits under ``key`` atomically; returns the entry's path."""
    final = entry_path(key)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if os.path.isdir(final) and load_encoded(key) is None:
        shutil.rmtree(final, ignore_errors=True)  # a damaged entry: replace it
    temporary = tempfile.mkdtemp(prefix=f".{key}.", dir=os.path.dirname(final))
    try:
        schema = pa.schema(
            [("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())), ("row_number", pa.int64())]
        )
        for name in SPLITS:
            rows = splits[name]
            table = pa.table(
                {
                    "input_ids": [e["input_ids"] for e in rows.examples],
                    "labels": [e["labels"] for e in rows.examples],
                    "row_number": rows.row_numbers,
                },
                schema=schema,
            )
            with pa.OSFile(os.path.join(temporary, f"{name}.arrow"), "wb") as sink:
                with pa.ipc.new_file(sink, schema) as writer:
                    writer.write_table(table)
        meta = {"version": CACHE_FORMAT_VERSION, "stats": {name: splits[name].stats.to_dict() for name in SPLITS}}
        with open(os.path.join(temporary, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        try:
            os.replace(temporary, final)
        except OSError:
            # Another run wrote the same entry first (a non-empty target cannot be replaced); theirs is as good.
            shutil.rmtree(temporary, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final
