"""Helpers of the fault-injection suite: a trained tiny model, the CLI in a subprocess, and a kill at a chosen point."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from ludwig_llm.cli import main

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ludwig_llm", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def kill_at(fault: str, args, tmp_path, timeout: float = 300) -> None:
    """Run `ludwig_llm ARGS` with `fault` injected (tests/reliability/inject.py) and SIGKILL it once it reaches the fault."""
    marker = tmp_path / f"reached_{fault}"
    process = subprocess.Popen([sys.executable, "-m", "tests.reliability.inject", fault, str(marker), "--", *map(str, args)],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + timeout
        while not marker.exists():
            if process.poll() is not None:
                raise AssertionError(f"the process ended (exit {process.returncode}) before reaching {fault}:\n"
                                     f"{process.stderr.read()[-3000:]}")
            assert time.time() < deadline, f"{fault} not reached within {timeout} s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def write_config(directory: pathlib.Path, config: dict, name: str = "config.yaml") -> str:
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


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
