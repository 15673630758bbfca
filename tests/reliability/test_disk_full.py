"""A full disk during a checkpoint, the final save and predict: one line naming the path and what was kept,
exit 1, and nothing earlier lost. Predict fills a real tmpfs when the test may mount one; the training cases
make the file write itself fail with ENOSPC (the module's `open`, i.e. at the filesystem call)."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess

import pandas as pd
import pytest

import ludwig_llm.results as results
import ludwig_llm.trainers.checkpoint as checkpoint_module
from ludwig_llm.cli import main
from ludwig_llm.results import list_checkpoints, read_run_state
from ludwig_llm.trainers.checkpoint import read_checkpoint
from tests.processes import write_config
from tests.reliability.conftest import one_error_line

NO_SPACE = "error: no space left on device while writing"


def full_disk_open(when):
    """An `open` whose writes fail with ENOSPC for the paths where `when(path)` holds."""

    def fake_open(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        if any(flag in mode for flag in "wax") and when(os.fspath(path)):
            def write(*_):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

            handle.write = write
        return handle

    return fake_open


def test_checkpoint_on_a_full_disk_keeps_the_earlier_one(make_config, small_dataset_csv, tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 3, "checkpoint_steps": 1, "checkpoints_to_keep": 10}))
    monkeypatch.setattr(checkpoint_module, "open", full_disk_open(lambda path: "step-00000002" in path), raising=False)
    out = tmp_path / "out"
    assert main(["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out)]) == 1
    run = out / "experiment_run"
    first = run / "checkpoints" / "step-00000001"
    assert one_error_line(capsys.readouterr().err) == (
        f"{NO_SPACE} {run / 'checkpoints' / 'step-00000002'}: the earlier checkpoint {first} is kept, and `--resume` "
        "continues from it. Free some space and run the command again.")
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000001"]  # no half checkpoint, no staging leftover
    read_checkpoint(str(first))
    assert read_run_state(str(run))["state"] == "failed"


def test_final_save_on_a_full_disk_keeps_the_checkpoint(make_config, small_dataset_csv, tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 2, "checkpoint_steps": 1}))
    monkeypatch.setattr(results, "open", full_disk_open(lambda path: "model.partial" in path), raising=False)
    out = tmp_path / "out"
    assert main(["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out)]) == 1
    run = out / "experiment_run"
    assert one_error_line(capsys.readouterr().err) == (
        f"{NO_SPACE} {run / 'model'}: the checkpoint {run / 'checkpoints' / 'step-00000002'} is kept; "
        f"`train --resume {run}` saves the model from it. Free some space and run the command again.")
    assert not (run / "model").exists() and not (run / "model.partial").exists()
    assert [os.path.basename(c) for c in list_checkpoints(str(run / "checkpoints"))] == ["step-00000001", "step-00000002"]


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 1 MiB tmpfs filled to the last byte (skips where mounting is not allowed)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        fd = os.open(mount / "ballast", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_predict_on_a_full_tmpfs(trained_run, small_dataset_csv, full_tmpfs, capsys):
    out = full_tmpfs / "predictions"
    assert main(["predict", "--model_path", str(trained_run / "model"), "--dataset", small_dataset_csv, "--output_directory", str(out)]) == 1
    message = one_error_line(capsys.readouterr().err)
    directory = out / "predictions_run"
    assert message.startswith(f"{NO_SPACE} {directory / 'predictions.'}"), message
    assert "no file named" in message and "was written" in message
    assert not (directory / "predictions.parquet").exists() and not (directory / "predictions.csv").exists()
    assert os.listdir(directory) == []  # no temporary file left either


def test_predict_on_a_full_disk_patched(trained_run, small_dataset_csv, tmp_path, monkeypatch, capsys):
    """The same where no tmpfs can be mounted: the CSV write fails with ENOSPC after the Parquet one succeeded."""
    def to_csv(self, path, *args, **kwargs):
        with open(path, "w") as f:
            f.write("record_response\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    out = tmp_path / "p"
    assert main(["predict", "--model_path", str(trained_run / "model"), "--dataset", small_dataset_csv, "--output_directory", str(out)]) == 1
    directory = out / "predictions_run"
    assert one_error_line(capsys.readouterr().err) == (
        f"{NO_SPACE} {directory / 'predictions.csv'}: no file named {directory / 'predictions.csv'} was written, any earlier "
        "one is unchanged. Free some space and run the command again.")
    assert sorted(os.listdir(directory)) == ["predictions.parquet"]  # the complete Parquet file is kept
    assert len(pd.read_parquet(directory / "predictions.parquet")) == 40
