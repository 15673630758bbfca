"""A missing, truncated, overwritten, NaN-valued or pickle weights file, a corrupt manifest and an unreachable
hub id: one line that names the file (or the id) and what to do, exit 1, no traceback; `--debug` adds it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ludwig_llm.cli import main
from ludwig_llm.models.bundle import MANIFEST_FILE
from tests.processes import cli, write_config
from tests.reliability.conftest import one_error_line

ADAPTER = "adapter_model.safetensors"


def predict_error(model_dir, dataset, tmp_path, capsys) -> str:
    assert main(["predict", "--model_path", str(model_dir), "--dataset", dataset, "--output_directory", str(tmp_path / "p")]) == 1
    return one_error_line(capsys.readouterr().err)


def test_the_manifest_records_a_checksum_of_each_weights_file(trained_run):
    checksums = json.loads((trained_run / "model" / MANIFEST_FILE).read_text())["checksums"]
    assert ADAPTER in checksums and len(checksums[ADAPTER]) == 64


def test_missing_adapter_file_is_named(model_copy, small_dataset_csv, tmp_path, capsys):
    (model_copy / ADAPTER).unlink()
    message = predict_error(model_copy, small_dataset_csv, tmp_path, capsys)
    assert f"{model_copy / ADAPTER} is missing" in message


def test_truncated_adapter_file_is_named(model_copy, small_dataset_csv, tmp_path, capsys):
    path = model_copy / ADAPTER
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = predict_error(model_copy, small_dataset_csv, tmp_path, capsys)
    assert f"{path} is corrupt" in message and "copy the model directory again" in message


def test_adapter_overwritten_with_nan_bytes_of_the_same_size_is_refused(model_copy, small_dataset_csv, tmp_path, capsys):
    """The issue's case: it loaded, predicted empty strings and exited 0."""
    path = model_copy / ADAPTER
    path.write_bytes(b"\xff\xff\xc0\x7f" * (path.stat().st_size // 4) + b"\x00" * (path.stat().st_size % 4))
    message = predict_error(model_copy, small_dataset_csv, tmp_path, capsys)
    assert str(path) in message and "corrupt" in message


def test_nan_weights_are_an_error_even_without_a_checksum(model_copy, small_dataset_csv, tmp_path, capsys):
    """A model saved before checksums were recorded (or a manifest edited to match) still never loads NaN weights."""
    path = model_copy / ADAPTER
    weights = load_file(path)
    name = sorted(weights)[0]
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, path)
    manifest = json.loads((model_copy / MANIFEST_FILE).read_text())
    manifest.pop("checksums")
    (model_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    message = predict_error(model_copy, small_dataset_csv, tmp_path, capsys)
    assert f"{path}: tensor '{name}' holds NaN or infinite values" in message


def test_pickle_weights_are_refused(model_copy, small_dataset_csv, tmp_path, capsys):
    torch.save(load_file(model_copy / ADAPTER), model_copy / "adapter_model.bin")
    (model_copy / ADAPTER).unlink()
    message = predict_error(model_copy, small_dataset_csv, tmp_path, capsys)
    assert f"{model_copy / 'adapter_model.bin'}: pickle weights are refused" in message and "safetensors" in message


def test_corrupt_manifest_is_named(model_copy, small_dataset_csv, tmp_path, capsys):
    (model_copy / MANIFEST_FILE).write_text('{"weights": "adapter", ')
    message = predict_error(model_copy, small_dataset_csv, tmp_path, capsys)
    assert f"{model_copy / MANIFEST_FILE} is corrupt (not valid JSON" in message


def test_export_of_a_damaged_adapter_is_refused(model_copy, tmp_path, capsys):
    path = model_copy / ADAPTER
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["export", "--model_path", str(model_copy), "--output_directory", str(tmp_path / "x"), "--format", "adapter"]) == 1
    assert f"{path} is corrupt" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # two CLI processes: about 30-60 s
def test_offline_hub_id_says_what_to_do(make_config, small_dataset_csv, tmp_path):
    """One subprocess: the message, then the same failure with --debug showing the traceback."""
    config = write_config(tmp_path, make_config(base_model="someorg/no-such-model-for-tests"))
    args = ["train", "--config", config, "--dataset", small_dataset_csv, "--output_directory", str(tmp_path / "out")]
    result = cli(*args, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    message = one_error_line(result.stderr)
    assert "someorg/no-such-model-for-tests" in message and "HF_HUB_OFFLINE" in message and "local model directory" in message
    debug = cli(*args, "--debug", env={"HF_HUB_OFFLINE": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and message in debug.stderr
