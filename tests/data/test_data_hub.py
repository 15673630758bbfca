"""`hf://` dataset references reach datasets.load_dataset with subset, split and data files (local directories: no network)."""

from __future__ import annotations

import json

import pytest

from ludwig_llm.data.hub import parse_hub_reference
from ludwig_llm.data.load import load_table
from ludwig_llm.errors import UserError

README = """---
configs:
- config_name: chat
  data_files:
  - split: train
    path: chat/train.jsonl
  - split: test
    path: chat/test.jsonl
- config_name: plain
  data_files:
  - split: train
    path: plain/*.jsonl
---
"""


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_dataset")
    (root / "README.md").write_text(README)
    for folder, split, rows in (("chat", "train", 3), ("chat", "test", 2), ("plain", "a", 4), ("plain", "b", 1)):
        (root / folder).mkdir(exist_ok=True)
        with open(root / folder / f"{split}.jsonl", "w") as f:
            for i in range(rows):
                f.write(json.dumps({"messages": [{"role": "user", "content": f"{folder} {split} {i}"}]}) + "\n")
    return root


def test_options_are_parsed_into_load_dataset_arguments():
    assert parse_hub_reference("hf://org/name?subset=x&split=train&data_files=a.json,b.json&revision=v1") == (
        "org/name", {"name": "x", "split": "train", "data_files": ["a.json", "b.json"], "revision": "v1"})
    assert parse_hub_reference("hf://org/name") == ("org/name", {})
    with pytest.raises(UserError, match="unknown option 'subst'; known: subset"):
        parse_hub_reference("hf://org/name?subst=x")


def test_subset_and_split_of_a_local_dataset_directory(dataset_dir):
    train = load_table(f"hf://{dataset_dir}?subset=chat&split=train")
    assert len(train) == 3 and train["messages"][0][0]["content"] == "chat train 0"
    every_split = load_table(f"hf://{dataset_dir}?subset=chat")
    assert sorted(every_split["split"].tolist()) == [0, 0, 0, 2, 2]  # train and test rows, marked for a fixed split
    assert len(load_table(f"hf://{dataset_dir}?subset=plain&split=train")) == 5


def test_data_files_pick_files_inside_the_directory(dataset_dir):
    df = load_table(f"hf://{dataset_dir}?data_files=plain/a.jsonl&split=train")
    assert len(df) == 4 and df["messages"][0][0]["content"] == "plain a 0"


def test_a_failure_names_the_dataset_and_the_options(dataset_dir):
    with pytest.raises(UserError, match=r"dataset 'hf://.*\?subset=nope': datasets.load_dataset\('.*', name=nope\) failed"):
        load_table(f"hf://{dataset_dir}?subset=nope")
