"""Evaluation metrics backed by torchmetrics, sacrebleu and rouge-score."""

from ludwig_llm.metrics.category import category_metrics, majority_baseline_accuracy
from ludwig_llm.metrics.text import IGNORE_INDEX, TokenLossAccumulator, generation_metrics

__all__ = [
    "IGNORE_INDEX",
    "TokenLossAccumulator",
    "category_metrics",
    "generation_metrics",
    "majority_baseline_accuracy",
]
