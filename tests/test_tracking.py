"""Tracking of fine-tuning runs: TensorBoard event files by default (read back with tensorboard's reader),
MLflow against a real local file store and Weights & Biases in offline mode when the config turns them on."""

from __future__ import annotations

import glob
import json
import os
import struct

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ludwig_llm.api import LudwigLLM
from ludwig_llm.results import TEST_STATISTICS, TRAINING_STATISTICS
from ludwig_llm.tracking import TENSORBOARD_DIR


@pytest.fixture(scope="module")
def tracked_run(make_config, small_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    uri = "file:" + str(root / "mlstore")
    config = make_config(trainer={"max_steps": 3, "eval_steps": 1}, generation={"max_new_tokens": 4},
                         tracking={"mlflow": True, "mlflow_tracking_uri": uri, "mlflow_experiment": "records",
                                   "wandb": True, "wandb_mode": "offline", "wandb_project": "tests"})
    result = LudwigLLM(config).experiment(dataset=small_dataset, output_directory=str(root / "results"))
    statistics = json.load(open(os.path.join(result.run_directory, TRAINING_STATISTICS)))
    return result.run_directory, uri, statistics


def expected_losses(statistics):
    return [(entry["step"], entry["loss"]) for entry in statistics["steps"]]


def test_tensorboard_event_files_hold_loss_learning_rate_and_validation_metrics(tracked_run):
    run_directory, _, statistics = tracked_run
    events = EventAccumulator(os.path.join(run_directory, TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "validation/loss", "validation/perplexity", "test/record/bleu"} <= tags
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("train/loss")] == expected_losses(statistics)
    validation = [(e["step"], e["validation"]["loss"]) for e in statistics["evaluations"]]
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("validation/loss")] == validation


def test_mlflow_file_store_holds_the_run(tracked_run):
    from mlflow.tracking import MlflowClient

    run_directory, uri, statistics = tracked_run
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("records")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == os.path.basename(run_directory) and run.info.status == "FINISHED"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert history == [(step, pytest.approx(loss)) for step, loss in expected_losses(statistics)]
    test_bleu = json.load(open(os.path.join(run_directory, TEST_STATISTICS)))["record"]["bleu"]
    assert run.data.metrics["test/record/bleu"] == pytest.approx(test_bleu)
    assert run.data.params["trainer.learning_rate"] == "0.005" and run.data.params["adapter.type"] == "lora"


def wandb_history(run_file: str) -> list:
    """History records of an offline W&B run file (LevelDB-log framing of `Record` protobufs)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending, rows = open(run_file, "rb").read(), 7, b"", []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows


def test_wandb_offline_run_holds_the_metrics(tracked_run):
    run_directory, _, statistics = tracked_run
    (run_file,) = glob.glob(os.path.join(run_directory, "wandb", "offline-run-*", "run-*.wandb"))
    rows = wandb_history(run_file)
    losses = [(row["_step"], row["train/loss"]) for row in rows if "train/loss" in row]
    assert losses == [(step, pytest.approx(loss)) for step, loss in expected_losses(statistics)]
    assert any("validation/loss" in row for row in rows)


def test_default_config_writes_only_tensorboard(make_config, small_dataset, tmp_path):
    result = LudwigLLM(make_config(trainer={"max_steps": 1})).train(dataset=small_dataset, output_directory=str(tmp_path))
    assert os.path.isdir(os.path.join(result.run_directory, TENSORBOARD_DIR))
    assert not os.path.exists(tmp_path / "mlruns") and not os.path.exists(os.path.join(result.run_directory, "wandb"))
