"""The CLI in a subprocess, shared by the tests that need a real process: a plain run, and a run SIGKILLed
once a condition holds (a checkpoint on disk, an injected fault reached)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Callable, Sequence

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli(*args, env=None) -> subprocess.CompletedProcess:
    """`python -m ludwig_llm ARGS`, run to its end, output captured."""
    return subprocess.run([sys.executable, "-m", "ludwig_llm", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def write_config(directory: pathlib.Path, config: dict, name: str = "config.yaml") -> str:
    path = pathlib.Path(directory) / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def kill_when(command: Sequence[str], condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Start COMMAND (python arguments) and SIGKILL it as soon as CONDITION() is true.

    Fails if the process ends first (with its stderr) or CONDITION does not hold within TIMEOUT seconds;
    WHAT names the condition in those messages.
    """
    process = subprocess.Popen([sys.executable, *map(str, command)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + timeout
        while not condition():
            if process.poll() is not None:
                raise AssertionError(f"the process ended (exit {process.returncode}) before {what}:\n"
                                     f"{process.stderr.read()[-3000:]}")
            assert time.time() < deadline, f"{what}: not within {timeout} s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
