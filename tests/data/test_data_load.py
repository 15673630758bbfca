"""Loading tables: every file format, save_to_disk directories, DataFrames, hub ids; clear errors."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from ludwig_llm.data.load import data_fingerprint, load_table
from ludwig_llm.errors import UserError

ROWS = pd.DataFrame({"question": ["What is 2+2?", "Capital of France?", "NA"], "answer": ["4", "Paris", "None"]})


def _write(df, path):
    extension = os.path.splitext(path)[1]
    if extension == ".csv":
        df.to_csv(path, index=False)
    elif extension == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif extension == ".json":
        df.to_json(path, orient="records")
    elif extension == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    elif extension == ".parquet":
        df.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_each_file_format_loads(tmp_path, extension):
    loaded = load_table(_write(ROWS, tmp_path / f"data{extension}"))
    assert list(loaded.columns) == ["question", "answer"]
    # "NA" and "None" are text in a text dataset, never missing values
    assert loaded["question"].tolist() == ROWS["question"].tolist()
    assert loaded["answer"].tolist() == ROWS["answer"].tolist()


def test_json_lines_in_a_json_file(tmp_path):
    path = tmp_path / "data.json"
    ROWS.to_json(path, orient="records", lines=True)
    assert load_table(str(path))["answer"].tolist() == ["4", "Paris", "None"]


def test_csv_keeps_leading_zeros_and_empty_cells_are_missing(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("code,label\n007,x\n,y\n")
    loaded = load_table(path)  # PathLike works too
    assert loaded["code"][0] == "007"
    assert pd.isna(loaded["code"][1])


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    single = tmp_path / "single"
    datasets.Dataset.from_pandas(ROWS).save_to_disk(str(single))
    assert load_table(str(single))["answer"].tolist() == ["4", "Paris", "None"]

    split_dir = tmp_path / "dict"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_pandas(ROWS), "test": datasets.Dataset.from_pandas(ROWS.head(1))}
    ).save_to_disk(str(split_dir))
    loaded = load_table(str(split_dir))
    assert len(loaded) == 4
    assert loaded["split"].tolist() == [0, 0, 0, 2]


def test_dataframe_is_copied():
    loaded = load_table(ROWS)
    loaded.loc[0, "answer"] = "changed"
    assert ROWS.loc[0, "answer"] == "4"


def test_hub_dataset_id_concatenates_splits(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(dataset_id, *args, **kwargs):
        calls.append(dataset_id)
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_pandas(ROWS),
            "validation": datasets.Dataset.from_pandas(ROWS.head(2)),
            "test": datasets.Dataset.from_pandas(ROWS.head(1)),
        })

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_table("someone/qa")
    assert calls == ["someone/qa"]
    assert loaded["split"].tolist() == [0, 0, 0, 1, 1, 2]


def test_hub_failure_is_a_user_error(monkeypatch):
    import datasets

    def failing(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(UserError, match="someone/qa.*no network"):
        load_table("someone/qa")


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope.csv")
    with pytest.raises(UserError, match=f"training set '{path}': file not found"):
        load_table(path, what="training set")


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(UserError, match=r"unknown file type '\.xlsx'.*\.csv.*\.parquet"):
        load_table(str(path))


def test_unreadable_file_names_the_path(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(UserError, match="broken.parquet.*unreadable file"):
        load_table(str(path))
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{not json")
    with pytest.raises(UserError, match="broken.json.*unreadable file"):
        load_table(str(bad_json))


@pytest.mark.parametrize("content", ["", "question,answer\n"])
def test_empty_dataset(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(UserError, match="empty.csv' is empty"):
        load_table(str(path))
    with pytest.raises(UserError, match=r"dataset \(DataFrame\) is empty"):
        load_table(ROWS.iloc[0:0])


def test_directory_that_is_not_a_saved_dataset(tmp_path):
    with pytest.raises(UserError, match="not a dataset saved with datasets' save_to_disk"):
        load_table(str(tmp_path))


def test_fingerprint_is_stable_and_content_sensitive():
    assert data_fingerprint(ROWS) == data_fingerprint(ROWS.copy())
    # the same in a fresh interpreter (string hashing in Python is salted per process; this must not be)
    code = (
        "import pandas as pd; from ludwig_llm.data.load import data_fingerprint; "
        f"print(data_fingerprint(pd.DataFrame({ROWS.to_dict('list')!r})))"
    )
    other_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other_run == data_fingerprint(ROWS)
    changed = ROWS.copy()
    changed.loc[2, "answer"] = "Nothing"
    assert data_fingerprint(changed) != data_fingerprint(ROWS)
    assert data_fingerprint(ROWS.rename(columns={"answer": "response"})) != data_fingerprint(ROWS)
    # unhashable cells (lists, as JSON and hub datasets can hold) still fingerprint
    nested = pd.DataFrame({"tags": [["a", "b"], ["c"]]})
    assert data_fingerprint(nested) == data_fingerprint(nested.copy())
