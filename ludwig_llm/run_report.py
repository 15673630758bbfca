"""What a run directory gets once training and evaluation are done: the learning-curves PNG, the tracking
records (TensorBoard, MLflow, W&B), and the model card rewritten with the data fingerprint and test metrics
that were unknown when the model was saved."""

from __future__ import annotations

import os

from ludwig_llm.models.bundle import MANIFEST_FILE, read_model_directory
from ludwig_llm.models.card import write_model_card
from ludwig_llm.plots import write_learning_curves
from ludwig_llm.results import DESCRIPTION, MODEL_DIR, TEST_STATISTICS, TRAINING_STATISTICS, read_json
from ludwig_llm.tracking import track_finished_run


def finish_run(run_directory: str, config) -> None:
    write_learning_curves(run_directory)
    statistics = _read_if_present(os.path.join(run_directory, TRAINING_STATISTICS)) or {}
    facts = run_facts(run_directory)
    track_finished_run(config, run_directory, statistics, facts["test_statistics"])
    model_directory = os.path.join(run_directory, MODEL_DIR)
    if not os.path.isfile(os.path.join(model_directory, MANIFEST_FILE)):
        return  # --skip_save_model
    saved_config, manifest = read_model_directory(model_directory)
    write_model_card(model_directory, saved_config.to_dict(), manifest.__dict__, **facts)


def run_facts(run_directory: str) -> dict:
    """For the model card: the run's data fingerprint and test metrics (None where the run has none)."""
    description = _read_if_present(os.path.join(run_directory, DESCRIPTION)) or {}
    return {"data_fingerprint": description.get("data_fingerprint"),
            "test_statistics": _read_if_present(os.path.join(run_directory, TEST_STATISTICS))}


def _read_if_present(path: str):
    return read_json(path) if os.path.isfile(path) else None
