"""Run-directory helpers: directories replaced atomically, checkpoints listed in order."""

from __future__ import annotations

import os

import pytest

from ludwig_llm import results


def _write_file(name: str, text: str):
    def write(directory: str) -> None:
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(text)

    return write


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name), encoding="utf-8") as f:
        return f.read()


def test_a_directory_is_replaced_with_the_new_content(tmp_path):
    final = str(tmp_path / "model")
    results.write_directory_atomically(final, _write_file("weights", "old"))
    results.write_directory_atomically(final, _write_file("weights", "new"))
    assert _read(final, "weights") == "new"
    assert sorted(os.listdir(tmp_path)) == ["model"], "no staging or replaced directory is left behind"


def test_a_failure_between_the_renames_keeps_the_old_directory(tmp_path, monkeypatch):
    """The new directory cannot be renamed into place (a crash, a full disk): the old model must survive."""
    final = str(tmp_path / "model")
    results.write_directory_atomically(final, _write_file("weights", "old"))
    rename = os.replace

    def failing_rename(source, target):
        if source.endswith(".partial"):
            raise OSError("simulated failure while moving the new directory into place")
        rename(source, target)

    monkeypatch.setattr(results.os, "replace", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        results.write_directory_atomically(final, _write_file("weights", "new"))
    assert _read(final, "weights") == "old"


def test_a_crash_between_the_renames_is_recovered_by_the_next_write(tmp_path):
    final = tmp_path / "model"
    aside = tmp_path / "model.old"  # what a process killed between the two renames leaves
    aside.mkdir()
    (aside / "weights").write_text("old")
    results.recover_directory(str(final))
    assert (final / "weights").read_text() == "old" and not aside.exists()


def test_checkpoints_are_listed_oldest_first_without_partial_or_replaced_ones(tmp_path):
    root = tmp_path / results.CHECKPOINTS_DIR
    for name in (results.checkpoint_name(12), results.checkpoint_name(3), results.checkpoint_name(7) + ".partial",
                 results.checkpoint_name(5) + ".old", "notes"):
        (root / name).mkdir(parents=True)
    assert [os.path.basename(p) for p in results.list_checkpoints(str(root))] == ["step-00000003", "step-00000012"]
    assert results.latest_checkpoint_in(str(tmp_path)).endswith("step-00000012")
    results.prune_checkpoints(str(root), keep=1)
    assert [os.path.basename(p) for p in results.list_checkpoints(str(root))] == ["step-00000012"]
