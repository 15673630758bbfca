"""Predict and evaluate a table of rows with a loaded model: the same prompt rendering as training."""

from __future__ import annotations

import os
from typing import Optional, Tuple

from ludwig_llm.errors import UserError

SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}


def select_split(config, dataset, split: str):
    """The rows to predict: the whole table, or one split of it (by preprocessing.split)."""
    from ludwig_llm.data.load import load_table
    from ludwig_llm.data.split import split_table

    df = load_table(dataset)
    if split == "full":
        return df
    return getattr(split_table(df, config.preprocessing), SPLIT_NAMES[split])


def _model_inputs(config, built, df, retriever):
    from ludwig_llm.data.prompt import PromptRenderer, prompt_texts
    from ludwig_llm.data.tokenize import encode_prompts

    if len(df) == 0:
        raise UserError("the dataset to predict has no rows.")
    PromptRenderer(config, retriever=retriever).check_columns(df, where="dataset")
    prompts = prompt_texts(df, built.tokenizer, config, retriever=retriever)
    return prompts, encode_prompts(prompts, built.tokenizer, config)


def predict_rows(config, manifest, built, df, *, batch_size: Optional[int] = None, retriever=None,
                 model_directory: Optional[str] = None):
    """A DataFrame of predictions, one row per input row, in the input's order.

    With `model_directory` (where `built` was loaded from) and `backend.type: ray`, the model runs on Ray actors.
    """
    _, prompt_ids = _model_inputs(config, built, df, retriever)
    return _predict_from_ids(config, manifest, built, prompt_ids, batch_size or config.trainer.eval_batch_size,
                             model_directory=model_directory)


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

        labels = manifest.labels or list(feature.vocab or [])
        probabilities = score_labels(built.model, built.tokenizer, prompt_ids, labels, batch_size=batch_size, progress=progress)
        best = probabilities.argmax(axis=1)
        columns = {
            f"{feature.name}_predictions": [labels[i] for i in best],
            f"{feature.name}_probability": probabilities.max(axis=1),
        }
        for j, label in enumerate(labels):
            columns[f"{feature.name}_probabilities_{label}"] = probabilities[:, j]
        return pd.DataFrame(columns)
    from ludwig_llm.inference.generation import generate

    texts = generate(built.model, built.tokenizer, prompt_ids, config.generation, batch_size=batch_size, progress=progress)
    return pd.DataFrame({f"{feature.name}_response": texts})


def evaluate_rows(config, manifest, built, df, *, batch_size: Optional[int] = None, retriever=None,
                  model_directory: Optional[str] = None) -> Tuple[object, dict]:
    """(predictions, statistics) against the targets in the output feature's column (predictions as in `predict_rows`)."""
    feature = config.output_feature
    column = feature.column_name()
    if column not in df.columns:
        raise UserError(f"cannot evaluate: the dataset has no column '{column}' (output feature '{feature.name}').")
    batch_size = batch_size or config.trainer.eval_batch_size
    prompts, prompt_ids = _model_inputs(config, built, df, retriever)
    predictions = _predict_from_ids(config, manifest, built, prompt_ids, batch_size, model_directory=model_directory)
    targets = ["" if v is None else str(v) for v in df[column].tolist()]
    if feature.type == "category":
        from ludwig_llm.metrics.category import category_metrics

        labels = manifest.labels or list(feature.vocab or [])
        unknown = sorted(set(targets) - set(labels))
        if unknown:
            raise UserError(f"column '{column}' has labels the model does not know: {unknown[:5]}; known: {labels}.")
        probability_columns = [f"{feature.name}_probabilities_{label}" for label in labels]
        statistics = category_metrics(targets, predictions[f"{feature.name}_predictions"].tolist(),
                                      predictions[probability_columns].to_numpy(), labels)
    else:
        statistics = _text_statistics(config, built, prompts, targets, predictions[f"{feature.name}_response"].tolist(), batch_size)
    statistics["rows"] = len(df)
    return predictions, {feature.name: statistics}


def _text_statistics(config, built, prompts, targets, generated, batch_size) -> dict:
    from ludwig_llm.data.tokenize import PaddingCollator, encode_for_training
    from ludwig_llm.inference.teacher_forcing import teacher_forced_metrics
    from ludwig_llm.metrics.text import generation_metrics

    encoded = encode_for_training(prompts, targets, built.tokenizer, config)
    device = next(built.model.parameters()).device
    statistics = teacher_forced_metrics(built.model, list(encoded.examples), batch_size=batch_size,
                                        collate=PaddingCollator(built.tokenizer.pad_token_id), device=device)
    if config.output_feature.generation_metrics:
        statistics.update(generation_metrics(generated, targets))
    return statistics


def write_predictions(predictions, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    predictions.to_parquet(os.path.join(directory, "predictions.parquet"), index=False)
    predictions.to_csv(os.path.join(directory, "predictions.csv"), index=False)
