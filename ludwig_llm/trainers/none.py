"""The `none` trainer (in-context learning): no parameter update; the run's model/ points at the base model."""

from __future__ import annotations

import os
import shutil
from typing import Dict, List, Optional

from huggingface_hub import snapshot_download

from ludwig_llm.models.bundle import TRAIN_LABEL_COUNTS, save_model_directory
from ludwig_llm.models.loader import hf_token
from ludwig_llm.results import MODEL_DIR, write_directory_atomically
from ludwig_llm.trainers.run import TrainingRun

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def train(run: TrainingRun) -> dict:
    """No parameter update: save the model directory (unless asked not to); `train` then evaluates on the test split."""
    if run.save_model:
        save_untrained_model(run.config, run_directory=run.run_directory, tokenizer=run.tokenizer,
                             base_model_path=run.base_model_path, labels=run.labels, retriever=run.data.retriever,
                             label_counts=run.label_counts)
    return {"steps": [], "evaluations": [], "note": "trainer 'none': no parameters were updated"}


def save_untrained_model(config, *, run_directory: str, tokenizer, base_model_path: str,
                         labels: Optional[List[str]], retriever, label_counts: Optional[Dict[str, int]] = None) -> None:
    """Write model/ without loading the weights: the config, tokenizer and a reference to the base model.

    A pretrained adapter is copied in, so predict uses exactly what this run evaluated. ``label_counts``
    (a category's training labels) go into the manifest, for the majority-class baseline of evaluation.
    """
    adapter_source = config.adapter.pretrained_adapter_weights if config.adapter else None

    def write(directory: str) -> None:
        weights = "base"
        if adapter_source:
            local = _local_adapter_directory(adapter_source)
            for name in ADAPTER_FILES:
                shutil.copy2(os.path.join(local, name), os.path.join(directory, name))
            weights = "adapter"
        # model=None: the adapter files are already in place, and base weights are only referenced.
        save_model_directory(directory, config=config, model=None, tokenizer=tokenizer, base_model_path=base_model_path,
                             weights=weights, labels=labels, retriever=retriever,
                             extra={TRAIN_LABEL_COUNTS: label_counts} if label_counts else None)

    write_directory_atomically(os.path.join(run_directory, MODEL_DIR), write)


def _local_adapter_directory(source: str) -> str:
    if os.path.isdir(os.path.expanduser(source)):
        return os.path.expanduser(source)
    return snapshot_download(source, allow_patterns=list(ADAPTER_FILES), token=hf_token())
