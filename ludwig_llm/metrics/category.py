"""Classification metrics for category outputs, computed with torchmetrics."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def category_metrics(
    true_labels: list[str],
    predicted_labels: list[str],
    probabilities: np.ndarray | None,
    labels: list[str],
) -> dict[str, Any]:
    """Score predicted categories against true ones. All values are JSON-serializable.

    ``labels`` fixes the class order used for ``probabilities`` columns and the
    confusion matrix. Every true label must be in ``labels``; a predicted label that
    is not (e.g. free text from a generative model) counts as wrong, is tallied in
    ``unknown_predictions`` and appears in no confusion-matrix column.

    Returns:
        ``accuracy``: fraction of rows predicted correctly.
        ``macro_f1``: unweighted mean of per-class F1 over the labels that occur in
            the true or predicted labels (as torchmetrics and sklearn do by default;
            a label seen nowhere would add an uninformative 0).
        ``precision``, ``recall``: ``{label: value}``, 0.0 where undefined (no
            predictions / no true rows for that label).
        ``confusion_matrix``: counts, rows = true, columns = predicted, both in
            ``confusion_matrix_labels`` order (= ``labels``).
        ``confusion_matrix_labels``: the label order.
        ``unknown_predictions``: number of predictions outside ``labels``.
        ``roc_auc``: from ``probabilities`` (rows sum to 1, columns in ``labels``
            order). With 2 labels, binary AUC with ``labels[1]`` as positive class;
            otherwise one-vs-rest AUC averaged over the labels present in
            ``true_labels`` (a label with no true rows has no defined AUC and is
            left out). ``None`` if ``probabilities`` is None or fewer than two
            labels occur in ``true_labels``.
    """
    if len(true_labels) != len(predicted_labels):
        raise ValueError(f"{len(true_labels)} true labels but {len(predicted_labels)} predictions")
    if not true_labels:
        raise ValueError("category_metrics needs at least one row")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    index = {label: i for i, label in enumerate(labels)}
    unexpected = sorted(set(true_labels) - index.keys())
    if unexpected:
        raise ValueError(f"true labels not in labels: {unexpected[:10]}")

    n = len(labels)
    # One extra class (index n) absorbs predictions outside `labels`, so they count
    # as errors without being forced onto a real class; its stats are dropped below.
    num_classes = n + 1
    target = torch.tensor([index[t] for t in true_labels])
    preds = torch.tensor([index.get(p, n) for p in predicted_labels])

    def per_class(metric_cls) -> list[float]:
        return metric_cls(num_classes=num_classes, average=None)(preds, target)[:n].tolist()

    f1 = per_class(MulticlassF1Score)
    seen = set(target.tolist()) | set(preds.tolist())
    seen_f1 = [f1[i] for i in range(n) if i in seen]
    confusion = MulticlassConfusionMatrix(num_classes=num_classes)(preds, target)

    return {
        "accuracy": float(MulticlassAccuracy(num_classes=num_classes, average="micro")(preds, target)),
        "macro_f1": sum(seen_f1) / len(seen_f1),
        "precision": dict(zip(labels, per_class(MulticlassPrecision))),
        "recall": dict(zip(labels, per_class(MulticlassRecall))),
        "confusion_matrix": confusion[:n, :n].tolist(),
        "confusion_matrix_labels": list(labels),
        "unknown_predictions": int((preds == n).sum()),
        "roc_auc": _roc_auc(target, probabilities, n),
    }


def _roc_auc(target, probabilities, n: int) -> float | None:
    present = sorted(set(target.tolist()))
    if probabilities is None or len(present) < 2:
        return None
    probs = torch.as_tensor(probabilities, dtype=torch.float32)
    if probs.shape != (len(target), n):
        raise ValueError(f"probabilities shape {tuple(probs.shape)} != (rows, labels) = {(len(target), n)}")
    if n == 2:
        return float(BinaryAUROC()(probs[:, 1], target))
    with warnings.catch_warnings():
        # torchmetrics warns about (and scores 0 for) absent classes; we drop them.
        warnings.simplefilter("ignore")
        per_class = MulticlassAUROC(num_classes=n, average=None)(probs, target)
    return float(per_class[present].mean())


def majority_baseline_accuracy(true_labels: list[str], train_labels: list[str]) -> float:
    """Accuracy of always predicting the most frequent training label.

    Ties go to the label seen first in ``train_labels``.
    """
    if not true_labels or not train_labels:
        raise ValueError("majority_baseline_accuracy needs non-empty true and train labels")
    majority = Counter(train_labels).most_common(1)[0][0]
    return sum(label == majority for label in true_labels) / len(true_labels)
