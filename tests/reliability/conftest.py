"""Helpers of the fault-injection suite: a trained tiny model, the CLI in a subprocess, and a kill at a chosen point."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest

from ludwig_llm.cli import main
from tests.processes import kill_when, write_config


def kill_at(fault: str, args, tmp_path, timeout: float = 300) -> None:
    """Run `ludwig_llm ARGS` with `fault` injected (tests/reliability/inject.py) and SIGKILL it once it reaches the fault."""
    marker = tmp_path / f"reached_{fault}"
    kill_when(["-m", "tests.reliability.inject", fault, str(marker), "--", *args], marker.exists, f"reaching {fault}", timeout)


def one_error_line(stderr: str) -> str:
    """The error a failed command printed: exactly one line, `error: ...`, and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.startswith("error: ")]  # progress bars end in \r
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="session")
def trained_run(make_config, small_dataset_csv, tmp_path_factory) -> pathlib.Path:
    """A finished 2-step LoRA run directory of the tiny model, with a checkpoint per step. Read-only: copy it to change it."""
    root = tmp_path_factory.mktemp("reliability_run")
    config = write_config(root, make_config(trainer={"max_steps": 2, "checkpoint_steps": 1}, generation={"max_new_tokens": 2}))
    assert main(["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(root / "results")]) == 0
    return root / "results" / "experiment_run"


@pytest.fixture
def model_copy(trained_run, tmp_path) -> pathlib.Path:
    """A copy of the trained run's model directory that a test may damage."""
    return pathlib.Path(shutil.copytree(trained_run / "model", tmp_path / "model"))
