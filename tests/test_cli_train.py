"""`ludwig_llm train` / `experiment` from the command line: the run options, one-line errors for bad
input, and a training process killed with SIGKILL after a checkpoint, then `--resume`d."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ludwig_llm.cli import main
from ludwig_llm.results import CHECKPOINTS_DIR, MODEL_DIR, TRAINING_STATISTICS
from ludwig_llm.trainers.checkpoint import STATE_FILE
from tests.processes import cli, kill_when, write_config


def test_train_options(make_config, small_dataset_csv, tmp_path, capsys):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 2}))
    out = tmp_path / "out"
    args = ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out),
            "--experiment_name", "my exp", "--model_name", "tiny", "--random_seed", "123"]
    assert main(args) == 0
    assert main(args + ["--skip_save_model"]) == 0
    printed = capsys.readouterr().out
    first, second = out / "my_exp_tiny", out / "my_exp_tiny_1"
    assert f"run directory: {first}" in printed and f"run directory: {second}" in printed
    assert yaml.safe_load((first / "config.yaml").read_text())["trainer"]["seed"] == 123
    assert (first / MODEL_DIR / "adapter_model.safetensors").is_file()
    assert not (second / MODEL_DIR).exists()
    assert json.loads((second / TRAINING_STATISTICS).read_text())["total_steps"] == 2


def test_experiment_writes_test_statistics(make_config, small_dataset_csv, tmp_path):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 1}))
    assert main(["experiment", "--config", config, "--dataset", small_dataset_csv, "--output_directory",
                 str(tmp_path / "out")]) == 0
    statistics = json.loads((tmp_path / "out" / "experiment_run" / "test_statistics.json").read_text())
    assert statistics["record"]["rows"] == 4


BAD_INPUTS = {
    # case: (config changes, dataset content or None for a missing file, words the error line must contain)
    "missing column": ({}, "sentence,answer\nAlice moved.,x\n", ["'record'"]),
    "empty dataset": ({}, "sentence,record\n", ["empty", "data.csv"]),
    "unreadable file": ({}, b"\xff\xfe\x00garbage", ["unreadable", "data.parquet"]),
    "missing file": ({}, None, ["not found", "nowhere.csv"]),
    "template names an absent column": ({"prompt": {"template": "{__sample__} {topic}"}}, "sentence,record\na,b\n",
                                        ["'topic'"]),
    "model needs remote code": ({"base_model": "REMOTE"}, "sentence,record\na,b\n", ["trust_remote_code", "remote"]),
}


def _bad_input_args(case, make_config, tiny_model_dir, tmp_path):
    import shutil

    changes, content, words = BAD_INPUTS[case]
    changes = dict(changes)
    if changes.get("base_model") == "REMOTE":
        remote = tmp_path / "remote"
        shutil.copytree(tiny_model_dir, remote)
        model_config = json.loads((remote / "config.json").read_text())
        model_config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
        (remote / "config.json").write_text(json.dumps(model_config))
        changes["base_model"] = str(remote)
    if content is None:
        dataset = tmp_path / "nowhere.csv"
    elif isinstance(content, bytes):
        dataset = tmp_path / "data.parquet"
        dataset.write_bytes(content)
    else:
        dataset = tmp_path / "data.csv"
        dataset.write_text(content)
    config = write_config(tmp_path, make_config(**changes))
    return ["train", "--config", config, "--dataset", str(dataset), "--output_directory", str(tmp_path / "out")], words


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_prints_one_error_line_and_exits_non_zero(case, make_config, tiny_model_dir, tmp_path, capsys):
    args, words = _bad_input_args(case, make_config, tiny_model_dir, tmp_path)
    assert main(args) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    error_lines = [line for line in errors if line.startswith("error: ")]
    assert len(error_lines) == 1, errors
    assert not any("Traceback" in line for line in errors)
    for word in words:
        assert word in error_lines[0], error_lines[0]


def test_bad_input_in_a_real_process_has_no_traceback(make_config, tiny_model_dir, tmp_path):
    args, words = _bad_input_args("missing column", make_config, tiny_model_dir, tmp_path)
    completed = cli(*args)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "'record'" in lines[-1], completed.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1


def test_invalid_config_lists_its_problems_and_exits_non_zero(tmp_path, small_dataset_csv, capsys):
    config = write_config(tmp_path, {"base_model": "x", "input_features": [{"name": "a", "type": "text"}],
                                     "output_features": [{"name": "b", "type": "text"}],
                                     "trainer": {"type": "finetune", "batch_size": 0}})
    assert main(["train", "--config", config, "--dataset", small_dataset_csv]) == 1
    err = capsys.readouterr().err
    assert "trainer.batch_size" in err and "Traceback" not in err


def _checkpoint_steps(run_dir) -> list:
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    return sorted(int(n.split("-")[1]) for n in os.listdir(root) if n.startswith("step-") and not n.endswith(".partial"))


@pytest.mark.slow  # real processes, killed and resumed: about 40 s on two CPU cores
def test_killed_training_resumes_from_its_last_checkpoint(make_config, small_dataset_csv, tmp_path):
    """SIGKILL after the first checkpoint, then `--resume`: training continues from that step, finishes,
    and keeps what the killed run wrote (config, checkpoints, the steps logged before the kill)."""
    total = 16
    config = write_config(tmp_path, make_config(trainer={"max_steps": total, "batch_size": 4, "checkpoint_steps": 2,
                                                         "checkpoints_to_keep": 100, "logging_steps": 1}))
    out = tmp_path / "out"
    run_dir = out / "experiment_run"
    args = ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out)]
    kill_when(["-m", "ludwig_llm", *args], lambda: bool(_checkpoint_steps(run_dir)), "the first checkpoint")
    killed_at = _checkpoint_steps(run_dir)
    last = killed_at[-1]
    assert last < total, "the process finished before it was killed; make the run longer"
    assert not (run_dir / TRAINING_STATISTICS).exists() and not (run_dir / MODEL_DIR).exists()
    config_before = (run_dir / "config.yaml").read_text()
    state_files = {step: run_dir / CHECKPOINTS_DIR / f"step-{step:08d}" / STATE_FILE for step in killed_at}
    stamps = {step: os.stat(path).st_mtime_ns for step, path in state_files.items()}
    logged_before = json.loads(state_files[last].read_text())["steps"]
    assert [s["step"] for s in logged_before] == list(range(1, last + 1))

    resumed = cli("train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(out),
                  "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # it started at the checkpoint's step: the progress bar opens there, and no earlier checkpoint was rewritten
    assert f"{last}/{total}" in resumed.stderr
    assert f" 0/{total}" not in resumed.stderr
    assert {step: os.stat(path).st_mtime_ns for step, path in state_files.items()} == stamps
    assert _checkpoint_steps(run_dir) == sorted(set(killed_at) | set(range(last + 2, total + 1, 2)))

    statistics = json.loads((run_dir / TRAINING_STATISTICS).read_text())
    assert statistics["total_steps"] == total
    assert [s["step"] for s in statistics["steps"]] == list(range(1, total + 1))
    assert statistics["steps"][:last] == logged_before
    assert (run_dir / "config.yaml").read_text() == config_before
    assert (run_dir / MODEL_DIR / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["experiment_run"]  # resumed in place, no new run directory


def test_resume_without_a_path_takes_the_latest_run(make_config, small_dataset_csv, tmp_path, capsys):
    config = write_config(tmp_path, make_config(trainer={"max_steps": 2, "checkpoint_steps": 1}))
    out = str(tmp_path / "out")
    base = ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", out]
    assert main(base) == 0
    assert main(base) == 0  # a second run: experiment_run_1
    os.utime(os.path.join(out, "experiment_run_1"))
    assert main(base + ["--resume"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run directory: {os.path.join(out, 'experiment_run_1')}"
    assert sorted(os.listdir(out)) == ["experiment_run", "experiment_run_1"]


def test_random_seed_with_resume_is_refused(make_config, small_dataset_csv, tmp_path, capsys):
    """A resumed run keeps the seed saved with it: a --random_seed beside --resume would be silently ignored."""
    config = write_config(tmp_path, make_config(trainer={"max_steps": 1}))
    out = str(tmp_path / "out")
    base = ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", out]
    assert main(base) == 0
    capsys.readouterr()
    before = sorted(os.listdir(os.path.join(out, "experiment_run")))
    assert main(base + ["--resume", "--random_seed", "7"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "--random_seed" in errors[0] and "--resume" in errors[0]
    assert sorted(os.listdir(os.path.join(out, "experiment_run"))) == before, "the refused run changed the run directory"
