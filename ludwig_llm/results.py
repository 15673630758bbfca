"""Run directories: a new one per run, never overwriting an earlier run's output."""

from __future__ import annotations

import errno
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
    """For `--resume` without a path: the newest run of this experiment that has a checkpoint and did not
    finish, or else the newest finished one with a checkpoint.

    Runs are ordered by creation (their `_N` suffix). A run without a checkpoint is never picked: one that
    failed before training (marked `failed` in its state file) or was killed before its first checkpoint
    has nothing to continue from. Says which run it picked, and why newer ones were passed over.
    """
    prefix = f"{_safe_name(experiment_name)}_{_safe_name(model_name)}"
    pattern = re.compile(rf"^{re.escape(prefix)}(?:_(\d+))?$")
    runs = []
    for name in os.listdir(output_directory) if os.path.isdir(output_directory) else []:
        match = pattern.match(name)
        if match and os.path.isdir(os.path.join(output_directory, name)):
            runs.append((int(match.group(1) or 0), os.path.join(output_directory, name)))
    if not runs:
        raise UserError(f"--resume: no earlier run '{prefix}' in {output_directory}.")
    newest_first = [run for _, run in sorted(runs, reverse=True)]
    resumable = [run for run in newest_first if latest_checkpoint_in(run)]
    unfinished = [run for run in resumable if read_run_state(run).get("state") != RUN_FINISHED]
    if resumable:
        run = (unfinished or resumable)[0]
        passed = [f"{os.path.basename(r)} [{read_run_state(r).get('state', 'unknown')}"
                  + ("" if r in resumable else ", no checkpoint") + "]" for r in newest_first[: newest_first.index(run)]]
        note = f" (passed over: {', '.join(passed)})" if passed else ""
        print(f"--resume: continuing {run} from its checkpoint {os.path.basename(latest_checkpoint_in(run))}{note}.")
        return run
    skipped = [f"{os.path.basename(run)} [{read_run_state(run).get('state', 'unknown')}]" for run in newest_first]
    raise UserError(f"--resume: no run '{prefix}' in {output_directory} has a checkpoint ({', '.join(skipped)}); "
                    "train without --resume to start a new run.")


RUN_STATE = "run_state.json"
RUN_CREATED, RUN_TRAINING, RUN_CHECKPOINTED, RUN_FINISHED, RUN_FAILED = "created", "training", "checkpointed", "finished", "failed"


def mark_run_state(run_directory: str, state: str, **details: Any) -> None:
    """Record where a run is (created, training, checkpointed, finished, failed) in `<run>/run_state.json`."""
    record = {**read_run_state(run_directory), "state": state, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **details}
    if state != RUN_FAILED:
        record.pop("error", None)
    write_json(os.path.join(run_directory, RUN_STATE), record)


def read_run_state(run_directory: str) -> Dict[str, Any]:
    try:
        record = read_json(os.path.join(run_directory, RUN_STATE))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def checkpoint_kept(checkpoints_root: str) -> str:
    """What a failed checkpoint write leaves: the earlier checkpoints."""
    earlier = list_checkpoints(checkpoints_root)
    if not earlier:
        return "no checkpoint was written yet"
    return f"the earlier checkpoint {earlier[-1]} is kept, and `--resume` continues from it"


def model_kept(run_directory: str) -> str:
    """What a failed final save leaves: the run's checkpoints."""
    checkpoint = latest_checkpoint_in(run_directory)
    if checkpoint is None:
        return f"no model was saved in {run_directory} (it has no checkpoint)"
    return f"the checkpoint {checkpoint} is kept; `train --resume {run_directory}` saves the model from it"


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


def write_directory_atomically(final: str, write: Callable[[str], None], *, kept: str = "") -> None:
    """Write into a temporary sibling, fsync it, then swap it in: a crash at any point leaves `final` complete, old or new.

    An existing `final` is renamed aside, the new one renamed in, and only then is the old one deleted. A
    failure between the two renames puts the old one back; a crash there leaves it as `<final>.old`, which
    the next write (or `recover_directory`) restores first. A full disk is a UserError naming `final` and
    what was kept (`kept`, or by default that an earlier `final`, if any, is unchanged).
    """
    final = os.path.normpath(final)  # "out/" would stage inside itself
    staging, replaced = final + _STAGING_SUFFIX, final + _REPLACED_SUFFIX
    recover_directory(final)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.makedirs(staging)
        write(staging)
        fsync_tree(staging)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(error):
            raise disk_full_error(final, kept or f"nothing was written under that name, any earlier {os.path.basename(final)} is unchanged") from None
        raise
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
    _fsync_path(os.path.dirname(os.path.abspath(final)))


def recover_directory(final: str) -> None:
    """Put back the directory that a crash between the two renames of `write_directory_atomically` left aside."""
    replaced = final + _REPLACED_SUFFIX
    if not os.path.exists(final) and os.path.isdir(replaced):
        os.replace(replaced, final)


def write_json(path: str, data: Any) -> None:
    """Write JSON atomically, so an interrupted run never leaves a truncated file behind."""
    write_text_atomically(path, json.dumps(data, indent=2, default=_jsonable))


def write_text_atomically(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    write_file_atomically(path, write)


def write_file_atomically(path: str, write: Callable[[str], None], *, kept: str = "") -> None:
    """Have `write(tmp)` write a temporary file beside `path`, fsync it, then rename it to `path`.

    After a kill at any moment, a file under its final name is complete (the old one, or the new one); a
    leftover temporary file has a name no reader looks for. A full disk is a UserError naming `path` and
    saying what was kept (`kept`, or by default that no file of that name was written or changed).
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}{_STAGING_SUFFIX}")
    try:
        write(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(directory)
    except BaseException as error:
        _remove(tmp)
        if is_disk_full(error):
            raise disk_full_error(path, kept or f"no file named {path} was written, any earlier one is unchanged") from None
        raise


class DiskFullError(UserError):
    """The disk filled up while writing an output."""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, DiskFullError) or isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path: str, kept: str) -> DiskFullError:
    return DiskFullError(f"no space left on device while writing {path}: {kept}. Free some space and run the command again.")


def _fsync_path(path: str) -> None:
    """Flush a file, or a directory's entries, to the disk (directories cannot be opened for fsync on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if is_disk_full(error) or not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


def fsync_tree(root: str) -> None:
    """fsync every file under `root`, then the directories, so a renamed-in directory is complete on disk."""
    for directory, _, files in os.walk(root):
        for name in files:
            _fsync_path(os.path.join(directory, name))
        _fsync_path(directory)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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
