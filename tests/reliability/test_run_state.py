"""A run directory records its state; `--resume` without a path takes the newest run with a checkpoint and says
which; a run that failed before training is marked failed and never picked."""

from __future__ import annotations

import json

import pytest

from ludwig_llm.cli import main
from ludwig_llm.results import RUN_STATE, read_run_state
from tests.processes import write_config
from tests.reliability.conftest import kill_at, one_error_line


@pytest.mark.slow  # a killed training process, then two more runs: about 30 s
def test_resume_skips_a_run_that_failed_on_its_data(make_config, small_dataset, small_dataset_csv, tmp_path, capsys):
    """The issue's scenario: an interrupted run with a checkpoint, then a `train` that fails on its data after
    creating its run directory; `--resume` must continue the interrupted run, not start the failed one at step 0."""
    config = write_config(tmp_path, make_config(trainer={"max_steps": 4, "checkpoint_steps": 1, "checkpoints_to_keep": 10}))
    out = tmp_path / "out"
    kill_at("checkpoint_3", ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", out], tmp_path)
    interrupted = out / "experiment_run"
    assert read_run_state(str(interrupted))["state"] == "checkpointed"

    bad = tmp_path / "bad.csv"
    small_dataset.drop(columns=["record"]).to_csv(bad, index=False)  # no target column: fails in preprocessing
    assert main(["train", "--config", config, "--dataset", str(bad), "--output_directory", str(out)]) == 1
    failed = out / "experiment_run_1"
    state = json.loads((failed / RUN_STATE).read_text())
    assert state["state"] == "failed" and "record" in state["error"]
    capsys.readouterr()

    assert main(["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out), "--resume"]) == 0
    printed = capsys.readouterr()
    assert (f"--resume: continuing {interrupted} from its checkpoint step-00000002 "
            f"(passed over: experiment_run_1 [failed, no checkpoint])") in printed.out
    assert " 2/4" in printed.err and " 0/4" not in printed.err  # it continued at step 2
    assert read_run_state(str(interrupted))["state"] == "finished"
    assert not (failed / "model").exists()


def test_resume_with_no_checkpoint_anywhere_is_an_error(make_config, small_dataset, tmp_path, capsys):
    config = write_config(tmp_path, make_config())
    bad = tmp_path / "bad.csv"
    small_dataset.drop(columns=["record"]).to_csv(bad, index=False)
    out = tmp_path / "out"
    assert main(["train", "--config", config, "--dataset", str(bad), "--output_directory", str(out)]) == 1
    capsys.readouterr()
    assert main(["train", "--config", config, "--dataset", str(bad), "--output_directory", str(out), "--resume"]) == 1
    message = one_error_line(capsys.readouterr().err)
    assert "has a checkpoint (experiment_run [failed])" in message and "without --resume" in message


def test_states_of_a_finished_run(trained_run):
    assert read_run_state(str(trained_run))["state"] == "finished"
