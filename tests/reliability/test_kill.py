"""kill -9 at chosen points of predict, checkpoint, the final save and export: a file or directory under its
final name is always complete, and what was written before the kill is kept."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from ludwig_llm.results import latest_checkpoint_in, list_checkpoints
from ludwig_llm.trainers.checkpoint import read_checkpoint
from tests.processes import cli, write_config
from tests.reliability.conftest import kill_at

ROWS = 40


@pytest.mark.parametrize("fault", ["predictions_parquet", "predictions_csv"])
def test_killed_predict_leaves_no_truncated_predictions(fault, trained_run, small_dataset_csv, tmp_path):
    out = tmp_path / "predictions"
    kill_at(fault, ["predict", "--model_path", trained_run / "model", "--dataset", small_dataset_csv, "--output_directory", out], tmp_path)
    directory = out / "predictions_run"
    for name in ("predictions.parquet", "predictions.csv"):
        path = directory / name
        if path.exists():  # written before the kill: then it holds every row
            frame = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
            assert len(frame) == ROWS, f"{name} under its final name has {len(frame)} of {ROWS} rows"
    assert not (directory / ("predictions.csv" if fault == "predictions_csv" else "predictions.parquet")).exists()


def _complete(checkpoint: str) -> None:
    read_checkpoint(checkpoint)  # every file present and readable


@pytest.mark.slow  # two training processes: about 20-40 s on two CPU cores
def test_killed_checkpoint_keeps_the_earlier_one_and_resume_uses_it(make_config, small_dataset_csv, tmp_path, capsys):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 4, "checkpoint_steps": 1, "checkpoints_to_keep": 10}))
    out = tmp_path / "out"
    kill_at("checkpoint_2", ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", out], tmp_path)
    run = out / "experiment_run"
    checkpoints = list_checkpoints(str(run / "checkpoints"))
    assert [os.path.basename(c) for c in checkpoints] == ["step-00000001"]  # the half-written second one is not listed
    _complete(checkpoints[0])

    resumed = cli("train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"--resume: continuing {run} from its checkpoint step-00000001" in resumed.stdout
    assert (run / "model" / "adapter_model.safetensors").is_file()
    for checkpoint in list_checkpoints(str(run / "checkpoints")):
        _complete(checkpoint)


@pytest.mark.slow  # a training process: about 15-25 s
def test_killed_final_save_leaves_no_half_model(make_config, small_dataset_csv, tmp_path):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 1, "checkpoint_steps": 1}))
    out = tmp_path / "out"
    kill_at("model_save", ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", out], tmp_path)
    run = out / "experiment_run"
    assert not (run / "model").exists()  # only the staging directory, which no reader looks at
    _complete(latest_checkpoint_in(str(run)))


@pytest.mark.slow  # two export processes: about 30-60 s
def test_killed_export_leaves_no_half_export(trained_run, tmp_path):
    target = tmp_path / "exported"
    kill_at("export", ["export", "--model_path", trained_run / "model", "--output_directory", target], tmp_path)
    assert not target.exists()
    # and the export can simply be run again
    again = cli("export", "--model_path", str(trained_run / "model"), "--output_directory", str(target))
    assert again.returncode == 0, again.stderr[-3000:]
    assert {"model.safetensors", "generation_config.json", "config.json"} <= set(os.listdir(target))
