"""Run directories: a new one per run, never overwriting an earlier run's output."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import time
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional

from ludwig_llm.errors import UserError

MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATISTICS = "training_statistics.json"
TEST_STATISTICS = "test_statistics.json"
DESCRIPTION = "description.json"
PREDICTIONS = "predictions"
CHECKPOINT_PREFIX = "step-"
_CHECKPOINT_NAME = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}\d+$")
_STAGING_SUFFIX = ".partial"  # a directory being written
_REPLACED_SUFFIX = ".old"  # the directory being replaced, until the new one is in place

_PACKAGES = ["ludwig_llm", "torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "ray"]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def new_run_directory(output_directory: str, experiment_name: str, model_name: str) -> str:
    """Create and return `<output>/<experiment>_<model>`, then `_1`, `_2`, ... if taken.

    Creation with exist_ok=False makes the choice atomic, so two runs started together never share a directory.
    """
    base = os.path.join(output_directory, f"{_safe_name(experiment_name)}_{_safe_name(model_name)}")
    os.makedirs(output_directory, exist_ok=True)
    candidate, suffix = base, 0
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = f"{base}_{suffix}"


def latest_run_directory(output_directory: str, experiment_name: str, model_name: str) -> str:
    """The most recently created run directory of this experiment, for `--resume` without a path."""
    prefix = f"{_safe_name(experiment_name)}_{_safe_name(model_name)}"
    pattern = re.compile(rf"^{re.escape(prefix)}(_\d+)?$")
    runs = [
        os.path.join(output_directory, name)
        for name in (os.listdir(output_directory) if os.path.isdir(output_directory) else [])
        if pattern.match(name)
    ]
    if not runs:
        raise UserError(f"--resume: no earlier run '{prefix}' in {output_directory}.")
    return max(runs, key=os.path.getmtime)


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def list_checkpoints(root: str) -> List[str]:
    """The complete checkpoints in `root`, oldest first (a staged or replaced directory is not one)."""
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, name) for name in sorted(os.listdir(root)) if _CHECKPOINT_NAME.match(name)]


def latest_checkpoint_in(run_directory: str) -> Optional[str]:
    checkpoints = list_checkpoints(os.path.join(run_directory, CHECKPOINTS_DIR))
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(root: str, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints in `root`."""
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def write_directory_atomically(final: str, write: Callable[[str], None]) -> None:
    """Write into a temporary sibling, then swap it in: a crash at any point leaves `final` complete, old or new.

    An existing `final` is renamed aside, the new one renamed in, and only then is the old one deleted. A
    failure between the two renames puts the old one back; a crash there leaves it as `<final>.old`, which
    the next write (or `recover_directory`) restores first.
    """
    staging, replaced = final + _STAGING_SUFFIX, final + _REPLACED_SUFFIX
    recover_directory(final)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    write(staging)
    had_old = os.path.exists(final)
    if had_old:
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    try:
        os.replace(staging, final)
    except BaseException:
        if had_old:
            os.replace(replaced, final)
        raise
    shutil.rmtree(replaced, ignore_errors=True)


def recover_directory(final: str) -> None:
    """Put back the directory that a crash between the two renames of `write_directory_atomically` left aside."""
    replaced = final + _REPLACED_SUFFIX
    if not os.path.exists(final) and os.path.isdir(replaced):
        os.replace(replaced, final)


def write_json(path: str, data: Any) -> None:
    """Write JSON atomically, so an interrupted run never leaves a truncated file behind."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=_jsonable)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def package_versions() -> Dict[str, Optional[str]]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_run(config_dict: Dict[str, Any], *, data_fingerprint: Optional[str], seed: int, timings: Dict[str, float],
                 extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {
        "config": config_dict,
        "data_fingerprint": data_fingerprint,
        "seed": seed,
        "timings_seconds": timings,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": sys.argv,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
