"""Text-generation metrics and teacher-forced token loss."""

from __future__ import annotations

import math
import warnings

import sacrebleu
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer
from torchmetrics import MeanMetric
from torchmetrics.text import CharErrorRate

from ludwig_llm.data.tokenize import IGNORE_INDEX


def generation_metrics(predictions: list[str], targets: list[str]) -> dict[str, float]:
    """Score generated texts against one reference each.

    Every value is on a 0-1 scale, BLEU included (sacrebleu's 0-100 score divided by
    100) so that all text metrics read the same way.

    Returns:
        ``bleu``: corpus BLEU (sacrebleu defaults: 13a tokenizer, exponential smoothing).
        ``rouge1``, ``rouge2``, ``rougeL``: rouge-score F-measure with the Porter
            stemmer, averaged over rows.
        ``char_error_rate``: torchmetrics CharErrorRate, i.e. total character edits
            over total target characters (corpus level, can exceed 1).
        ``exact_match``: fraction of rows equal after stripping surrounding whitespace.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    if not predictions:
        raise ValueError("generation_metrics needs at least one row")

    rouge_types = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=True)
    # RougeScorer.score takes (target, prediction), in that order.
    rows = [scorer.score(t, p) for p, t in zip(predictions, targets)]

    metrics = {"bleu": sacrebleu.corpus_bleu(predictions, [targets]).score / 100.0}
    for rouge_type in rouge_types:
        metrics[rouge_type] = sum(r[rouge_type].fmeasure for r in rows) / len(rows)
    metrics["char_error_rate"] = float(CharErrorRate()(predictions, targets))
    metrics["exact_match"] = sum(p.strip() == t.strip() for p, t in zip(predictions, targets)) / len(rows)
    return {k: float(v) for k, v in metrics.items()}


class TokenLossAccumulator:
    """Accumulates teacher-forced next-token loss and accuracy over batches.

    Feed it ``(logits, labels)`` batches straight from a causal LM: by default labels
    are aligned with the inputs, so position ``t`` of the logits is scored against
    label ``t + 1`` (``shift_labels=False`` if the caller already shifted them).
    Positions labelled ``IGNORE_INDEX`` are skipped.

    State lives in torchmetrics ``MeanMetric`` objects, so under torch.distributed
    ``compute()`` reduces across ranks; without a process group it is purely local.
    Perplexity is ``exp(loss)`` of the token-weighted mean NLL, which is what
    torchmetrics' ``Perplexity`` computes, but via ``cross_entropy`` (log-softmax)
    rather than softmax-then-log, which is steadier for low-precision logits.
    """

    def __init__(self, shift_labels: bool = True, ignore_index: int = IGNORE_INDEX):
        self.shift_labels = shift_labels
        self.ignore_index = ignore_index
        self._nll = MeanMetric()
        self._correct = MeanMetric()

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``logits`` is (batch, seq, vocab), ``labels`` is (batch, seq)."""
        if self.shift_labels:
            logits, labels = logits[:, :-1], labels[:, 1:]
        keep = labels != self.ignore_index
        if not keep.any():
            return
        # Select the scored positions before upcasting, so a bf16 batch with a large
        # vocabulary is not copied to float32 in full.
        logits = logits[keep].detach().float()
        targets = labels[keep]
        nll = F.cross_entropy(logits, targets, reduction="none")
        correct = (logits.argmax(dim=-1) == targets).to(torch.float32)

        for metric in (self._nll, self._correct):
            metric.to(logits.device)
        self._nll.update(nll)
        self._correct.update(correct)

    def compute(self) -> dict[str, float]:
        """Return ``loss`` (mean NLL per scored token, nats), ``perplexity`` and
        ``next_token_accuracy``. All are NaN if no token was scored."""
        with warnings.catch_warnings():
            # MeanMetric warns when empty; we report NaN for that case instead.
            warnings.simplefilter("ignore")
            loss = float(self._nll.compute())
            accuracy = float(self._correct.compute())
        return {
            "loss": loss,
            "perplexity": _safe_exp(loss),
            "next_token_accuracy": accuracy,
        }

    def reset(self) -> None:
        self._nll.reset()
        self._correct.reset()


def _safe_exp(x: float) -> float:
    # A diverged model can have loss > ~709, where math.exp raises instead of giving inf.
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
