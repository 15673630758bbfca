"""`ludwig_llm upload` with HfApi replaced by a recorder (no network): repository creation, what is uploaded
(the model directory, or the merged model with --merged), the token from HF_TOKEN and never printed."""

from __future__ import annotations

import os

import pytest

import ludwig_llm.hub_upload as hub_upload
from ludwig_llm.cli import main

TOKEN = "hf_secret_token_value_for_tests"


class RecordingHfApi:
    calls = []

    def __init__(self, token=None):
        RecordingHfApi.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        RecordingHfApi.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        RecordingHfApi.calls.append(("upload_folder", repo_id, sorted(os.listdir(folder_path)), kwargs))


@pytest.fixture
def hub(monkeypatch):
    RecordingHfApi.calls = []
    monkeypatch.setattr(hub_upload, "HfApi", RecordingHfApi)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return RecordingHfApi


def test_upload_model_directory(hub, trained_model_dir, capsys):
    assert main(["upload", "--model_path", trained_model_dir, "--repo_id", "my-org/record-model"]) == 0
    out = capsys.readouterr()
    assert "uploaded: https://huggingface.co/my-org/record-model" in out.out and TOKEN not in out.out + out.err
    (init, create, upload) = hub.calls
    assert init == ("init", TOKEN)
    assert create[1] == "my-org/record-model" and create[2]["exist_ok"] is True and create[2]["private"] is False
    assert {"adapter_model.safetensors", "README.md", "ludwig_llm_model.json", "tokenizer.json"} <= set(upload[2])


def test_upload_merged(hub, trained_model_dir):
    assert main(["upload", "--model_path", trained_model_dir, "--repo_id", "my-org/merged", "--merged", "--private"]) == 0
    upload = hub.calls[-1]
    assert upload[0] == "upload_folder" and hub.calls[1][2]["private"] is True
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= set(upload[2])
    assert "adapter_model.safetensors" not in upload[2]


def test_upload_errors(hub, trained_model_dir, monkeypatch, capsys):
    assert main(["upload", "--model_path", trained_model_dir, "--repo_id", "no-slash"]) == 1
    assert "ORG/NAME" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert main(["upload", "--model_path", trained_model_dir, "--repo_id", "my-org/x"]) == 1
    assert "HF_TOKEN" in capsys.readouterr().err
    assert hub.calls == []  # nothing was contacted
