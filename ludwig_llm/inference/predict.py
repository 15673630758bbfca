"""Predict and evaluate rows with a loaded model in this process: the same prompt rendering as training.

Everything here is local. The backend (``ludwig_llm.backends``) decides where the model runs: the local
backend calls `predict_from_ids` and `teacher_forced_statistics` here, and so does each Ray actor on its
share of the rows.
"""

from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Tuple

import pandas as pd

from ludwig_llm.data import rows as input_rows
from ludwig_llm.data.category import category_targets
from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.load import load_table, source_name
from ludwig_llm.data.prompt import PromptRenderer, cell_text, prompt_texts
from ludwig_llm.data.split import sample_table, split_table
from ludwig_llm.data.tokenize import IGNORE_INDEX, PaddingCollator, encode_for_training, encode_prompts, pad_token_id_of
from ludwig_llm.errors import UserError
from ludwig_llm.inference.generation import generate, model_device
from ludwig_llm.inference.teacher_forcing import teacher_forced_metrics
from ludwig_llm.metrics.category import category_metrics, majority_baseline_accuracy
from ludwig_llm.metrics.text import generation_metrics
from ludwig_llm.models.bundle import TRAIN_LABEL_COUNTS
from ludwig_llm.results import write_file_atomically
from ludwig_llm.schema.registry import load_implementation

# The --split choices, by the attribute of data.split's Splits that holds those rows.
SPLIT_CHOICES = {"training": "train", "validation": "validation", "test": "test"}


def select_split(config, dataset, split: str, *, need_targets: bool = False, manifest=None):
    """The rows to predict: the whole table, or one split of it, chosen as in training (sampling, then preprocessing.split).

    The columns the prompt needs (and with ``need_targets`` the output feature's targets, and with
    ``manifest`` too that a category's labels are known to the model) are checked first, so bad input
    fails with a message that names the dataset before any model work.
    """
    name = source_name(dataset, "dataset")
    df = load_table(dataset)
    renderer = PromptRenderer(config)
    renderer.check_columns(df, where=name)
    input_rows.refuse_long_cells(df, name, config.preprocessing.max_cell_characters)  # row numbers of the whole table
    if split != "full":
        df = getattr(split_table(sample_table(df, config.preprocessing), config.preprocessing), SPLIT_CHOICES[split])
        if len(df) == 0:
            raise UserError(f"the {split} split of {name} is empty (see preprocessing.split); use another --split.")
    if config.preprocessing.empty_inputs == input_rows.ERROR and structured_format(config) is None:
        input_rows.refuse_empty_inputs(df, name, renderer.input_columns())
    if need_targets:
        targets_of(config, df, where=name, manifest=manifest)
    return df


def resolve_batch_size(batch_size: Optional[int], config) -> int:
    if batch_size is None:
        return config.trainer.eval_batch_size
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1 (got {batch_size}).")
    return batch_size


def labels_of(config, manifest) -> list:
    return list(manifest.labels or config.output_feature.vocab or [])


def targets_of(config, df, *, where: str = "dataset", manifest=None) -> list:
    """The output feature's targets as text; a UserError for a missing column, empty cells or (given the manifest) unknown labels."""
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
        labels = labels_of(config, manifest)
        if feature.preprocessing.fallback_label is not None:  # unknown labels count as the fallback label
            return category_targets(feature, labels, df, where)
        unknown = sorted(set(targets) - set(labels))
        if unknown:
            raise UserError(f"cannot evaluate: column '{column}' of {where} has {len(unknown)} label(s) the model does not know: "
                            f"{unknown[:5]}; it knows: {labels}.")
    return targets


def model_inputs(config, tokenizer, df, retriever) -> Tuple[List[str], List[List[int]]]:
    """(prompt texts, prompt token ids) of every row, rendered and tokenized as in training."""
    if len(df) == 0:
        raise UserError("the dataset to predict has no rows.")
    structured = structured_format(config, tokenizer)
    if structured is not None:  # structured inputs have no prompt text: the rows stand in for it (see teacher_forcing_rows)
        structured.check_columns(df, "dataset")
        return df, structured.encode_prompts(df)
    PromptRenderer(config, retriever=retriever).check_columns(df, where="dataset")
    prompts = prompt_texts(df, tokenizer, config, retriever=retriever)
    return prompts, encode_prompts(prompts, tokenizer, config)


def predict_from_ids(config, manifest, built, prompt_ids, batch_size: int, progress: bool = True) -> pd.DataFrame:
    """Predictions for tokenized prompts with the model in this process; one row per prompt, in order."""
    feature = config.output_feature
    if feature.type == "category":
        labels = labels_of(config, manifest)
        predict_probabilities = load_implementation(type(feature.label_decoder()))  # score_labels, or the trained head's classify
        probabilities = predict_probabilities(built.model, built.tokenizer, prompt_ids, labels, batch_size=batch_size, progress=progress)
        best = probabilities.argmax(axis=1)
        columns = {
            f"{feature.name}_predictions": [labels[i] for i in best],
            f"{feature.name}_probability": probabilities.max(axis=1),
        }
        for j, label in enumerate(labels):
            columns[f"{feature.name}_probabilities_{label}"] = probabilities[:, j]
        return pd.DataFrame(columns)
    structured = structured_format(config, built.tokenizer)  # chat: stop at the template's end-of-turn marker
    generation = structured.generation_config(config.generation) if structured else config.generation
    stop_ids = structured.stop_token_ids() if structured else []
    texts = generate(built.model, built.tokenizer, prompt_ids, generation, batch_size=batch_size, progress=progress,
                     stop_token_ids=stop_ids)
    return pd.DataFrame({f"{feature.name}_response": texts})


def teacher_forcing_rows(config, tokenizer, prompts: Sequence[str], targets: Sequence[str]) -> List[dict]:
    """Prompt + target token rows with their loss labels, as the model was trained on them."""
    structured = structured_format(config, tokenizer)
    if structured is not None:  # `prompts` is the table of rows here (see model_inputs)
        return list(structured.encode_for_evaluation(prompts).examples)
    return list(encode_for_training(prompts, targets, tokenizer, config).examples)


def teacher_forced_statistics(built, rows: List[dict], batch_size: int) -> dict:
    """Loss, perplexity and next-token accuracy of the targets in `rows`, with the model in this process."""
    return teacher_forced_metrics(built.model, rows, batch_size=batch_size, collate=PaddingCollator(pad_token_id_of(built.tokenizer)),
                                  device=model_device(built.model))


def scored_tokens(rows: Sequence[dict]) -> int:
    """Target tokens that teacher forcing scores in `rows` (each label after the first that carries loss)."""
    return sum(sum(label != IGNORE_INDEX for label in row["labels"][1:]) for row in rows)


def combine_teacher_forced(parts: Sequence[dict]) -> dict:
    """One set of teacher-forced statistics from those of disjoint shares of the rows, each with its `tokens`."""
    tokens = sum(part["tokens"] for part in parts if part["tokens"])
    if not tokens:
        return {"loss": math.nan, "perplexity": math.nan, "next_token_accuracy": math.nan}
    loss = sum(part["loss"] * part["tokens"] for part in parts if part["tokens"]) / tokens
    accuracy = sum(part["next_token_accuracy"] * part["tokens"] for part in parts if part["tokens"]) / tokens
    perplexity = math.exp(loss) if loss < 709 else math.inf  # math.exp overflows beyond ~709
    return {"loss": loss, "perplexity": perplexity, "next_token_accuracy": accuracy}


def evaluation_statistics(config, manifest, targets: List[str], predictions: Optional[pd.DataFrame],
                          teacher_forced: Optional[dict]) -> dict:
    """The output feature's metrics against `targets`: a category's from its predictions (plus the majority
    baseline when the model recorded its training label counts), a text's from teacher forcing plus, when
    `predictions` were generated, the generation metrics."""
    feature = config.output_feature
    if feature.type == "category":
        labels = labels_of(config, manifest)
        probability_columns = [f"{feature.name}_probabilities_{label}" for label in labels]
        # A writable float copy: pandas may hand out a read-only view, which torch warns about.
        probabilities = predictions[probability_columns].to_numpy(dtype="float64", copy=True)
        statistics = category_metrics(targets, predictions[f"{feature.name}_predictions"].tolist(), probabilities, labels)
        statistics.update(_majority_baseline(manifest, targets))
    else:
        statistics = dict(teacher_forced)
        if predictions is not None:
            statistics.update(generation_metrics(predictions[f"{feature.name}_response"].tolist(), targets))
    statistics["rows"] = len(targets)
    return {feature.name: statistics}


def needs_generation(config) -> bool:
    """False for a text output whose `generation_metrics` is off: loss, perplexity and next-token accuracy
    need no generated text, so evaluation skips the slowest part."""
    feature = config.output_feature
    return feature.type != "text" or feature.generation_metrics


def _majority_baseline(manifest, targets) -> dict:
    """``majority_label`` and ``majority_baseline_accuracy`` from the training label counts saved with the model (if any)."""
    counts = (manifest.extra or {}).get(TRAIN_LABEL_COUNTS)
    if not counts:
        return {}
    train_labels = [label for label, count in counts.items() for _ in range(int(count))]
    return {
        "majority_label": max(counts, key=counts.get),  # the first of equals, as majority_baseline_accuracy picks it
        "majority_baseline_accuracy": majority_baseline_accuracy(targets, train_labels),
    }


def write_predictions(predictions, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    # Each file under its final name is complete: a killed predict leaves no truncated file that looks whole.
    write_file_atomically(os.path.join(directory, "predictions.parquet"), lambda tmp: predictions.to_parquet(tmp, index=False))
    write_file_atomically(os.path.join(directory, "predictions.csv"), lambda tmp: predictions.to_csv(tmp, index=False))
