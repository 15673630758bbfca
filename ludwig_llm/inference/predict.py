"""Predict and evaluate a table of rows with a loaded model: the same prompt rendering as training."""

from __future__ import annotations

import os
from typing import Optional, Tuple

from ludwig_llm.errors import UserError

SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}
# Manifest `extra` key: {label: count} of the training split, in order of first appearance (category outputs).
TRAIN_LABEL_COUNTS = "train_label_counts"


def select_split(config, dataset, split: str, *, need_targets: bool = False, manifest=None):
    """The rows to predict: the whole table, or one split of it, chosen as in training (sampling, then preprocessing.split).

    The columns the prompt needs (and with ``need_targets`` the output feature's targets, and with
    ``manifest`` too that a category's labels are known to the model) are checked first, so bad input
    fails with a message that names the dataset before any model work.
    """
    from ludwig_llm.data.load import load_table, source_name
    from ludwig_llm.data.prompt import PromptRenderer
    from ludwig_llm.data.split import sample_table, split_table

    name = source_name(dataset, "dataset")
    df = load_table(dataset)
    PromptRenderer(config).check_columns(df, where=name)
    if split != "full":
        df = getattr(split_table(sample_table(df, config.preprocessing), config.preprocessing), SPLIT_NAMES[split])
        if len(df) == 0:
            raise UserError(f"the {split} split of {name} is empty (see preprocessing.split); use another --split.")
    if need_targets:
        _targets(config, df, where=name, manifest=manifest)
    return df


def _batch_size(batch_size: Optional[int], config) -> int:
    if batch_size is None:
        return config.trainer.eval_batch_size
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1 (got {batch_size}).")
    return batch_size


def _labels(config, manifest) -> list:
    return list(manifest.labels or config.output_feature.vocab or [])


def _targets(config, df, *, where: str = "dataset", manifest=None) -> list:
    """The output feature's targets as text; a UserError for a missing column, empty cells or (given the manifest) unknown labels."""
    from ludwig_llm.data.prompt import cell_text

    from ludwig_llm.data.formats import structured_format

    feature = config.output_feature
    column = feature.column_name()
    structured = structured_format(config)
    if structured is not None and feature.type == "text":  # the output column, else the answer the input cell ends with
        return structured.targets(df, where)
    if column not in df.columns:
        raise UserError(f"cannot evaluate: {where} has no column '{column}' (output feature '{feature.name}'); "
                        f"its columns are: {', '.join(map(str, df.columns))}.")
    missing = df[column].isna().to_numpy()
    if missing.any():
        raise UserError(f"cannot evaluate: column '{column}' of {where} is empty in {int(missing.sum())} row(s), "
                        f"first at row {int(missing.argmax())} (counting from 0); fill or remove those rows.")
    targets = [cell_text(v) for v in df[column].tolist()]
    if manifest is not None and feature.type == "category":
        labels = _labels(config, manifest)
        unknown = sorted(set(targets) - set(labels))
        if unknown:
            raise UserError(f"cannot evaluate: column '{column}' of {where} has {len(unknown)} label(s) the model does not know: "
                            f"{unknown[:5]}; it knows: {labels}.")
    return targets


def _model_inputs(config, built, df, retriever):
    from ludwig_llm.data.prompt import PromptRenderer, prompt_texts
    from ludwig_llm.data.tokenize import encode_prompts

    from ludwig_llm.data.formats import structured_format

    if len(df) == 0:
        raise UserError("the dataset to predict has no rows.")
    structured = structured_format(config, built.tokenizer)
    if structured is not None:  # structured inputs have no prompt text: the rows stand in for it (see _text_statistics)
        structured.check_columns(df, "dataset")
        return df, structured.encode_prompts(df)
    PromptRenderer(config, retriever=retriever).check_columns(df, where="dataset")
    prompts = prompt_texts(df, built.tokenizer, config, retriever=retriever)
    return prompts, encode_prompts(prompts, built.tokenizer, config)


def predict_rows(config, manifest, built, df, *, batch_size: Optional[int] = None, retriever=None,
                 model_directory: Optional[str] = None):
    """A DataFrame of predictions, one row per input row, in the input's order.

    With `model_directory` (where `built` was loaded from) and `backend.type: ray`, the model runs on Ray actors.
    """
    batch_size = _batch_size(batch_size, config)
    _, prompt_ids = _model_inputs(config, built, df, retriever)
    return _predict_from_ids(config, manifest, built, prompt_ids, batch_size, model_directory=model_directory)


def _predict_from_ids(config, manifest, built, prompt_ids, batch_size, model_directory: Optional[str] = None,
                      progress: bool = True):
    import pandas as pd

    if model_directory is not None and config.backend.type == "ray":
        # Same prompts and token ids as here; the Ray Data actors run this function (without model_directory).
        from ludwig_llm.backends.ray import RayBackend

        return RayBackend(config).predict_rows(model_directory, prompt_ids, batch_size)
    feature = config.output_feature
    if feature.type == "category":
        from ludwig_llm.inference.label_scoring import score_labels

        labels = _labels(config, manifest)
        probabilities = score_labels(built.model, built.tokenizer, prompt_ids, labels, batch_size=batch_size, progress=progress)
        best = probabilities.argmax(axis=1)
        columns = {
            f"{feature.name}_predictions": [labels[i] for i in best],
            f"{feature.name}_probability": probabilities.max(axis=1),
        }
        for j, label in enumerate(labels):
            columns[f"{feature.name}_probabilities_{label}"] = probabilities[:, j]
        return pd.DataFrame(columns)
    from ludwig_llm.data.formats import structured_format
    from ludwig_llm.inference.generation import generate

    structured = structured_format(config, built.tokenizer)  # chat: stop at the template's end-of-turn marker
    generation = structured.generation_config(config.generation) if structured else config.generation
    stop_ids = structured.stop_token_ids() if structured else []
    texts = generate(built.model, built.tokenizer, prompt_ids, generation, batch_size=batch_size, progress=progress,
                     stop_token_ids=stop_ids)
    return pd.DataFrame({f"{feature.name}_response": texts})


def evaluate_rows(config, manifest, built, df, *, batch_size: Optional[int] = None, retriever=None,
                  model_directory: Optional[str] = None) -> Tuple[object, dict]:
    """(predictions, statistics) against the targets in the output feature's column (predictions as in `predict_rows`;
    None for a text output whose `generation_metrics` is off, since then nothing is generated).

    Targets are checked before any model work. For a category, the statistics also hold the accuracy of
    always predicting the training split's most frequent label, when the model recorded its label counts.
    """
    feature = config.output_feature
    targets = _targets(config, df, manifest=manifest)
    batch_size = _batch_size(batch_size, config)
    prompts, prompt_ids = _model_inputs(config, built, df, retriever)
    if feature.type == "text" and not feature.generation_metrics:
        # Loss, perplexity and next-token accuracy need no generated text: skip the slowest part.
        return None, {feature.name: {**_text_statistics(config, built, prompts, targets, None, batch_size), "rows": len(df)}}
    predictions = _predict_from_ids(config, manifest, built, prompt_ids, batch_size, model_directory=model_directory)
    if feature.type == "category":
        from ludwig_llm.metrics.category import category_metrics

        labels = _labels(config, manifest)
        probability_columns = [f"{feature.name}_probabilities_{label}" for label in labels]
        # A writable float copy: pandas may hand out a read-only view, which torch warns about.
        probabilities = predictions[probability_columns].to_numpy(dtype="float64", copy=True)
        statistics = category_metrics(targets, predictions[f"{feature.name}_predictions"].tolist(), probabilities, labels)
        statistics.update(_majority_baseline(manifest, targets))
    else:
        statistics = _text_statistics(config, built, prompts, targets, predictions[f"{feature.name}_response"].tolist(), batch_size)
    statistics["rows"] = len(df)
    return predictions, {feature.name: statistics}


def _majority_baseline(manifest, targets) -> dict:
    """``majority_label`` and ``majority_baseline_accuracy`` from the training label counts saved with the model (if any)."""
    from ludwig_llm.metrics.category import majority_baseline_accuracy

    counts = (manifest.extra or {}).get(TRAIN_LABEL_COUNTS)
    if not counts:
        return {}
    train_labels = [label for label, count in counts.items() for _ in range(int(count))]
    return {
        "majority_label": max(counts, key=counts.get),  # the first of equals, as majority_baseline_accuracy picks it
        "majority_baseline_accuracy": majority_baseline_accuracy(targets, train_labels),
    }


def _text_statistics(config, built, prompts, targets, generated, batch_size) -> dict:
    from ludwig_llm.data.tokenize import PaddingCollator, encode_for_training
    from ludwig_llm.inference.teacher_forcing import teacher_forced_metrics
    from ludwig_llm.metrics.text import generation_metrics

    from ludwig_llm.data.formats import structured_format

    structured = structured_format(config, built.tokenizer)
    if structured is not None:  # `prompts` is the table of rows here (see _model_inputs)
        encoded = structured.encode_for_evaluation(prompts)
    else:
        encoded = encode_for_training(prompts, targets, built.tokenizer, config)
    device = next(built.model.parameters()).device
    statistics = teacher_forced_metrics(built.model, list(encoded.examples), batch_size=batch_size,
                                        collate=PaddingCollator(built.tokenizer.pad_token_id), device=device)
    if generated is not None:
        statistics.update(generation_metrics(generated, targets))
    return statistics


def write_predictions(predictions, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    predictions.to_parquet(os.path.join(directory, "predictions.parquet"), index=False)
    predictions.to_csv(os.path.join(directory, "predictions.csv"), index=False)
