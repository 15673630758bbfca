"""The `none` trainer (in-context learning): no parameter update; the run's model/ points at the base model."""

from __future__ import annotations

import os
import shutil
from typing import Dict, List, Optional

from ludwig_llm.backends.session import write_directory_atomically
from ludwig_llm.results import MODEL_DIR

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def save_untrained_model(config, *, run_directory: str, tokenizer, base_model_path: str,
                         labels: Optional[List[str]], retriever, label_counts: Optional[Dict[str, int]] = None) -> None:
    """Write model/ without loading the weights: the config, tokenizer and a reference to the base model.

    A pretrained adapter is copied in, so predict uses exactly what this run evaluated. ``label_counts``
    (a category's training labels) go into the manifest, for the majority-class baseline of evaluation.
    """
    from ludwig_llm.inference.predict import TRAIN_LABEL_COUNTS
    from ludwig_llm.models.bundle import save_model_directory

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
    from huggingface_hub import snapshot_download

    from ludwig_llm.models.loader import hf_token

    return snapshot_download(source, allow_patterns=list(ADAPTER_FILES), token=hf_token())
