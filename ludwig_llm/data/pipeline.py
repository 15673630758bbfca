"""The data pipeline: load -> validate -> sample -> split -> render prompts -> tokenize (cached).

`prepare_data` is what training and the ``preprocess`` command call; `debug_report` shows what
the model is trained on, token by token.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import pandas as pd

from ludwig_llm.data import cache as encoded_cache
from ludwig_llm.data import rows as input_rows
from ludwig_llm.data.category import category_labels, category_targets, class_indices, encode_for_classifier, label_target_texts
from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.load import Source, data_fingerprint, load_table, source_name
from ludwig_llm.data.prompt import PromptRenderer, cell_text, model_input_text, prompt_texts
from ludwig_llm.data.split import Splits, sample_table, split_table, splits_from_sets
from ludwig_llm.data.tokenize import IGNORE_INDEX, EncodedRows, encode_for_training, encode_prompts
from ludwig_llm.errors import UserError

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The raw splits and their encoded rows.

    ``stats[split]`` holds ``rows`` (encoded), ``truncated_prompt_rows``, ``truncated_target_rows``,
    ``dropped_rows`` and ``cache_hit``. ``retriever`` is the one built from the training split
    (None without retrieval); save it with the model so prediction uses the same examples.
    """

    splits: Splits
    train: EncodedRows
    validation: EncodedRows
    test: EncodedRows
    stats: Dict[str, Dict[str, object]]
    fingerprint: str
    cache_hit: bool = False
    cache_path: Optional[str] = None
    retriever: object = None
    sources: Dict[str, str] = field(default_factory=dict)
    labels: Optional[List[str]] = None  # a category output's label set, else None

    def encoded(self) -> Dict[str, EncodedRows]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def _load_sources(dataset, training_set, validation_set, test_set) -> List[Tuple[str, str, pd.DataFrame]]:
    """(role, name for messages, table) of each given source, after checking the combination."""
    sets = {"training_set": training_set, "validation_set": validation_set, "test_set": test_set}
    if dataset is not None and any(s is not None for s in sets.values()):
        given = ", ".join(k for k, v in sets.items() if v is not None)
        raise UserError(f"give either a dataset (split by preprocessing.split) or separate sets, not both (got dataset and {given}).")
    if dataset is None and training_set is None:
        if validation_set is not None or test_set is not None:
            raise UserError("validation/test sets were given without a training set (training_set).")
        raise UserError("no data: give a dataset (--dataset), or a training set (--training_set).")
    if dataset is not None:
        return [("dataset", source_name(dataset, "dataset"), load_table(dataset, what="dataset"))]
    roles = [("train", "training set", training_set), ("validation", "validation set", validation_set), ("test", "test set", test_set)]
    return [(role, source_name(src, what), load_table(src, what=what)) for role, what, src in roles if src is not None]


def _check_table(df: pd.DataFrame, name: str, renderer: PromptRenderer, target_column: str) -> None:
    renderer.check_columns(df, name)
    if target_column not in df.columns:
        raise UserError(
            f"{name} has no column '{target_column}' (the output feature's column); its columns are: {', '.join(map(str, df.columns))}."
        )
    missing = df[target_column].isna().to_numpy()
    if missing.any():
        first = int(missing.argmax())
        raise UserError(
            f"{name}: column '{target_column}' (the output feature's target) is empty in {int(missing.sum())} row(s), "
            f"first at row {first} (counting from 0); fill or remove those rows."
        )


def _split(sources: List[Tuple[str, str, pd.DataFrame]], preprocessing) -> Splits:
    if sources[0][0] == "dataset":
        return split_table(sample_table(sources[0][2], preprocessing), preprocessing)
    # Separate sets are sampled as one pool (sample_size counts all their rows), then kept apart.
    sizes = [len(df) for _, _, df in sources]
    kept = sample_table(pd.DataFrame(index=range(sum(sizes))), preprocessing).index.to_numpy()
    tables, start = {}, 0
    for (role, _, df), size in zip(sources, sizes):
        positions = kept[(kept >= start) & (kept < start + size)] - start
        tables[role] = df.iloc[positions]
        start += size
    return splits_from_sets(tables.get("train"), tables.get("validation"), tables.get("test"))


def _fingerprint(sources: List[Tuple[str, str, pd.DataFrame]]) -> str:
    parts = {role: data_fingerprint(df) for role, _, df in sources}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _encode_splits(config, tokenizer, splits: Splits, retriever, progress: bool,
                   labels: Optional[List[str]]) -> Dict[str, EncodedRows]:
    feature = config.output_feature
    encoded = {}
    structured = structured_format(config, tokenizer)
    for name, df in splits.items():
        if structured is not None:  # chat and dataset presets build their own pieces and loss mask
            encoded[name] = structured.encode_for_training(df, split=name, progress=progress, description=f"tokenizing {name}")
            continue
        prompts = prompt_texts(df, tokenizer, config, retriever)
        if labels is None:
            targets = [cell_text(value) for value in df[feature.column_name()].tolist()]
        else:  # a category: its label (or the fallback label), as label scoring reads it, or a class index for a head
            targets = category_targets(feature, labels, df, where=f"the {name} split")
            if feature.uses_classifier_head():
                encoded[name] = encode_for_classifier(prompts, class_indices(labels, targets), tokenizer, config)
                continue
            targets = label_target_texts(prompts, targets, tokenizer)
        encoded[name] = encode_for_training(prompts, targets, tokenizer, config, progress=progress, description=f"tokenizing {name}")
    return encoded


def prepare_data(
    config,
    tokenizer,
    *,
    dataset: Optional[Source] = None,
    training_set: Optional[Source] = None,
    validation_set: Optional[Source] = None,
    test_set: Optional[Source] = None,
    retriever_factory: Optional[Callable[[pd.DataFrame], object]] = None,
    use_cache: bool = True,
    progress: bool = True,
) -> PreparedData:
    """Load, check, split, render and tokenize the data of a training run, reusing the cache when possible.

    Give ``dataset`` (split by ``preprocessing.split``) or ``training_set`` (plus optional
    ``validation_set``/``test_set``). ``retriever_factory(train_df)`` builds the retriever when
    ``prompt.retrieval.type`` is set. The cache is used when both ``use_cache`` and
    ``preprocessing.cache`` are on.
    """
    sources = _load_sources(dataset, training_set, validation_set, test_set)
    renderer = PromptRenderer(config)
    target_column = config.output_feature.column_name()
    structured = structured_format(config, tokenizer)  # chat and instruction presets check their own cells
    input_column = renderer.input_columns()  # the input feature's column, or the template's columns
    drop_empty = structured is None and config.preprocessing.empty_inputs == input_rows.DROP
    for _, name, df in sources:
        input_rows.refuse_long_cells(df, name, config.preprocessing.max_cell_characters)  # before any cell is parsed or rendered
        if structured is not None:
            structured.check_table(df, name, training=True)
        else:
            _check_table(df, name, renderer, target_column)
            if not drop_empty:
                input_rows.refuse_empty_inputs(df, name, input_column)

    splits = _split(sources, config.preprocessing)
    dropped: Dict[str, int] = {}
    if drop_empty:
        splits, dropped = input_rows.drop_empty_inputs(splits, input_column)
    if len(splits.train) == 0:
        raise UserError(
            f"the training split is empty ({len(splits.validation)} validation and {len(splits.test)} test rows): "
            "check preprocessing.split (probabilities or the split column) and sample_ratio/sample_size."
        )

    labels = category_labels(config.output_feature, splits.train) if config.output_feature.type == "category" else None
    retriever = None
    if config.prompt.retrieval.type is not None:
        if retriever_factory is None:
            raise ValueError("prompt.retrieval is set but prepare_data was given no retriever_factory.")
        retriever = retriever_factory(splits.train)

    fingerprint = _fingerprint(sources)
    # A retriever that cannot describe itself (no ``metadata()``) could change its examples unseen by the key.
    retrieval = retriever.metadata() if hasattr(retriever, "metadata") else None
    caching = use_cache and config.preprocessing.cache and (retriever is None or retrieval is not None)
    key = encoded_cache.cache_key(config, tokenizer, fingerprint, retrieval) if caching else None
    encoded = encoded_cache.load_encoded(key) if caching else None
    cache_hit = encoded is not None
    if encoded is None:
        encoded = _encode_splits(config, tokenizer, splits, retriever, progress, labels)
    cache_path = None
    if caching:
        cache_path = encoded_cache.entry_path(key) if cache_hit else encoded_cache.save_encoded(key, encoded)

    stats = {name: {**encoded_rows.stats.to_dict(), "cache_hit": cache_hit, **({input_rows.DROPPED_STAT: dropped[name]} if drop_empty else {})}
             for name, encoded_rows in encoded.items()}
    prepared = PreparedData(
        splits=splits, train=encoded["train"], validation=encoded["validation"], test=encoded["test"],
        stats=stats, fingerprint=fingerprint, cache_hit=cache_hit, cache_path=cache_path, retriever=retriever,
        sources={role: name for role, name, _ in sources}, labels=labels,
    )
    _warn_truncation(config, prepared)
    return prepared


def _warn_truncation(config, prepared: PreparedData) -> None:
    for name, stat in prepared.stats.items():
        if stat.get("truncated_turn_rows"):
            logger.warning("%s: %d of %d conversations lost their oldest turns to fit input_features[0].preprocessing.max_sequence_length (%s)%s.",
                           name, stat["truncated_turn_rows"], stat["rows"], config.input_feature.preprocessing.max_sequence_length,
                           _global_note(config))
        if stat["truncated_prompt_rows"]:
            logger.warning(
                "%s: %d of %d prompts were cut from the left to fit input_features[0].preprocessing.max_sequence_length (%s)%s.",
                name, stat["truncated_prompt_rows"], stat["rows"], config.input_feature.preprocessing.max_sequence_length,
                _global_note(config),
            )
        if stat["truncated_target_rows"]:
            limit = getattr(getattr(config.output_feature, "preprocessing", None), "max_sequence_length", None)
            logger.warning(
                "%s: %d of %d targets were cut to fit output_features[0].preprocessing.max_sequence_length (%s)%s.",
                name, stat["truncated_target_rows"], stat["rows"], limit, _global_note(config),
            )


def _global_note(config) -> str:
    limit = config.preprocessing.global_max_sequence_length
    return "" if limit is None else f" or preprocessing.global_max_sequence_length ({limit})"


def preprocess_summary(prepared: PreparedData) -> str:
    """A few lines for the terminal: rows and truncation per split, and where the cache is."""
    lines = []
    for name, stat in prepared.stats.items():
        line = f"{name:<10} {stat['rows']:>8} rows"
        extras = [
            f"{stat[key]} {label}" for key, label in
            (("truncated_prompt_rows", "prompts truncated"), ("truncated_target_rows", "targets truncated"),
             ("truncated_turn_rows", "conversations lost their oldest turns"), ("dropped_rows", "dropped"))
            if stat.get(key)
        ]
        lines.append(line + (f"  ({', '.join(extras)})" if extras else ""))
    if prepared.cache_path:
        lines.append(f"cache: {'reused' if prepared.cache_hit else 'written to'} {prepared.cache_path}")
    else:
        lines.append("cache: off")
    return "\n".join(lines) + "\n"


# --- debug view ---------------------------------------------------------------------------------


def _token_text(tokenizer, token_id: int) -> str:
    # The decoded text of one token, quoted with escapes, so spaces and newlines are visible.
    return json.dumps(tokenizer.decode([token_id]), ensure_ascii=False)


def _wrap(items: List[str], width: int = 100, indent: str = "    ") -> List[str]:
    lines, current = [], ""
    for item in items:
        if current and len(current) + 1 + len(item) > width - len(indent):
            lines.append(indent + current)
            current = item
        else:
            current = f"{current} {item}" if current else item
    if current:
        lines.append(indent + current)
    return lines


def debug_report(config, tokenizer, df: pd.DataFrame, rows: int = 3, retriever=None) -> str:
    """For the first ``rows`` rows of ``df``: the prompt as the model reads it, the token ids, and each
    token with the ones that carry loss in [brackets]. Without the output column only the prompt is shown.
    """
    structured = structured_format(config, tokenizer)
    if structured is not None:  # chat and dataset presets: each turn or part with its role, tokens and loss
        structured.check_columns(df, "dataset")
        return structured.debug_report(df, rows)
    renderer = PromptRenderer(config, retriever)
    renderer.check_columns(df, "dataset")
    target_column = config.output_feature.column_name()
    has_target = target_column in df.columns
    out = []
    for position, row in enumerate(df.head(rows).to_dict("records")):
        text = model_input_text(renderer.render(row), tokenizer, config.prompt.apply_chat_template)
        out.append(f"=== row {position} " + "=" * 60)
        out.append("prompt (as the model reads it):")
        out.extend("  | " + line for line in text.split("\n"))
        notes = []
        if has_target:
            target = cell_text(row[target_column])
            out.append(f"target ({target_column}): {target!r}")
            encoded = encode_for_training([text], [target], tokenizer, config, progress=False)
            if not encoded.examples:
                out.append("(dropped: no token carries loss)")
                continue
            ids, labels = encoded.examples[0]["input_ids"], encoded.examples[0]["labels"]
            notes += ["prompt truncated"] * encoded.stats.truncated_prompt_rows + ["target truncated"] * encoded.stats.truncated_target_rows
        else:
            prompt_ids, truncated = encode_prompts([text], tokenizer, config, return_truncated=True)
            ids, labels = prompt_ids[0], [IGNORE_INDEX] * len(prompt_ids[0])
            notes += ["prompt truncated"] * truncated
        loss = [label != IGNORE_INDEX for label in labels]
        out.append(f"input_ids ({len(ids)}): {ids}")
        tokens = [f"[{_token_text(tokenizer, i)}]" if carries else _token_text(tokenizer, i) for i, carries in zip(ids, loss)]
        out.append("tokens (loss on the [bracketed] ones):")
        out.extend(_wrap(tokens))
        notes.insert(0, f"{len(ids) - sum(loss)} tokens without loss, {sum(loss)} with loss")
        out.append("(" + "; ".join(notes) + ")")
    return "\n".join(out) + "\n"
