"""The `finetune` trainer for a category output with `decoder: {type: classifier}`: the finetune recipe with a
classification head and its cross-entropy loss.

Everything but the head, the loss and the validation metrics is FineTuneRecipe's. The head (models/classifier_head.py)
is added to the model before checkpoints, strategy and optimizer see it, so it trains, is checkpointed and resumed,
and is kept at its best validation step together with the adapter. Each row is a prompt whose last position's label
is its class index (data/category.py); the step's loss is the summed cross-entropy over its rows divided by the
step's rows, however they fall into micro-batches and workers.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from ludwig_llm.models.classifier_head import attach_new_head, head_of, last_token_logits
from ludwig_llm.trainers.finetune import FineTuneRecipe


def _last_positions(labels: torch.Tensor) -> torch.Tensor:
    """Each row's class index: the one label that is not IGNORE_INDEX (data/category.encode_for_classifier)."""
    return labels.max(dim=-1).values


class ClassifierLoss:
    """Summed cross-entropy of the head's logits over a micro-batch's rows, divided by the step's rows."""

    def __init__(self, model):
        self.model = model

    def __call__(self, train_model, inputs: dict, num_items_in_batch) -> torch.Tensor:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        logits = last_token_logits(train_model, head_of(self.model), inputs["input_ids"], inputs["attention_mask"])
        loss = torch.nn.functional.cross_entropy(logits, _last_positions(labels), reduction="sum")
        return loss / num_items_in_batch


class ClassifierRecipe(FineTuneRecipe):
    # `next_token_accuracy` is the class accuracy here (each row has one target: its class), so the finetune
    # trainer's validation_metric choices keep their meaning.
    lower_is_better = {"loss": True, "perplexity": True, "next_token_accuracy": False}

    def add_modules(self) -> None:
        super().add_modules()
        attach_new_head(self.model, len(self.job.labels), self.device)

    def setup(self) -> None:
        super().setup()
        self.loss = ClassifierLoss(self.model)
        self.row_targets = [1] * len(self.job.train_rows)  # one class per row

    def _validation_metrics(self) -> dict:
        rows, batch = self.job.validation_rows, self.trainer.eval_batch_size
        share = list(range(self.session.rank, len(rows), self.session.world_size))
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, correct, rows
        self.model.eval()
        with torch.no_grad(), self.autocast:
            for start in range(0, len(share), batch):
                inputs = {k: v.to(self.device) for k, v in self.collate([rows[i] for i in share[start:start + batch]]).items()}
                labels = _last_positions(inputs.pop("labels"))
                logits = last_token_logits(self.model, head_of(self.model), inputs["input_ids"], inputs["attention_mask"])
                sums += torch.tensor([torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item(),
                                      (logits.argmax(-1) == labels).sum().item(), len(labels)], dtype=torch.float64, device=self.device)
        if self.session.world_size > 1:
            dist.all_reduce(sums)
        loss, correct, count = sums.tolist()
        loss = loss / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 709)), "next_token_accuracy": correct / max(count, 1)}


run_classifier = ClassifierRecipe.run  # the worker function
