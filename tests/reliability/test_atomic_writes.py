"""The one atomic-write helper (results.write_file_atomically / write_directory_atomically): a failed write
leaves the earlier file whole and no temporary file behind; a full disk names the path and what was kept."""

from __future__ import annotations

import errno
import os

import pytest

from ludwig_llm.results import (DiskFullError, latest_run_directory, mark_run_state, new_run_directory, write_directory_atomically,
                                write_file_atomically, write_json)


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "statistics.json"
    write_json(str(target), {"rows": 1})

    def half_then_crash(tmp):
        with open(tmp, "w") as f:
            f.write('{"rows": ')
        raise RuntimeError("crashed mid-write")

    with pytest.raises(RuntimeError):
        write_file_atomically(str(target), half_then_crash)
    assert target.read_text() == '{\n  "rows": 1\n}'
    assert os.listdir(tmp_path) == ["statistics.json"]


def test_a_full_disk_names_the_path_and_what_was_kept(tmp_path):
    def no_space(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    with pytest.raises(DiskFullError) as error:
        write_file_atomically(str(tmp_path / "predictions.csv"), no_space)
    assert str(error.value) == (f"no space left on device while writing {tmp_path / 'predictions.csv'}: no file named "
                                f"{tmp_path / 'predictions.csv'} was written, any earlier one is unchanged. Free some space and "
                                "run the command again.")
    with pytest.raises(DiskFullError, match=f"while writing {tmp_path / 'model'}: the checkpoint is kept"):
        # a full disk inside a directory being written is reported under the directory's final name
        write_directory_atomically(str(tmp_path / "model"), lambda d: write_file_atomically(os.path.join(d, "x"), no_space),
                                   kept="the checkpoint is kept")
    assert os.listdir(tmp_path) == []


def test_a_directory_given_with_a_trailing_slash_is_staged_beside_it(tmp_path):
    write_directory_atomically(str(tmp_path / "export") + os.sep, lambda d: write_json(os.path.join(d, "a.json"), 1))
    assert sorted(os.listdir(tmp_path)) == ["export"] and os.listdir(tmp_path / "export") == ["a.json"]


def test_latest_run_directory_orders_runs_by_creation_and_needs_a_checkpoint(tmp_path, capsys):
    runs = [new_run_directory(str(tmp_path), "experiment", "run") for _ in range(11)]  # _10 sorts before _2 as text
    for run in runs:
        mark_run_state(run, "failed")
    for run in (runs[2], runs[10]):
        os.makedirs(os.path.join(run, "checkpoints", "step-00000001"))
    os.utime(runs[2])  # the newest by modification time is not the newest run
    assert latest_run_directory(str(tmp_path), "experiment", "run") == runs[10]
    assert f"continuing {runs[10]} from its checkpoint step-00000001." in capsys.readouterr().out


def test_an_interrupted_run_is_preferred_to_a_newer_finished_one(tmp_path, capsys):
    interrupted, finished = (new_run_directory(str(tmp_path), "experiment", "run") for _ in range(2))
    for run, state in ((interrupted, "checkpointed"), (finished, "finished")):
        os.makedirs(os.path.join(run, "checkpoints", "step-00000003"))
        mark_run_state(run, state)
    assert latest_run_directory(str(tmp_path), "experiment", "run") == interrupted
    assert "(passed over: experiment_run_1 [finished])" in capsys.readouterr().out
