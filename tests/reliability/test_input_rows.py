"""Empty or missing inputs, duplicate columns and malformed JSON Lines: refused with the place named, or
(with preprocessing.empty_inputs: drop) left out and counted, with flagged empty predictions."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ludwig_llm.cli import main
from tests.processes import write_config
from tests.reliability.conftest import one_error_line


def rows_with_empty_inputs(small_dataset, empty=(3, 7, 8)):
    df = small_dataset.copy()
    df.loc[list(empty), "sentence"] = ["", "   ", None][: len(empty)]
    return df


def test_training_refuses_rows_with_empty_inputs(make_config, small_dataset, tmp_path, capsys):
    data = tmp_path / "data.csv"
    rows_with_empty_inputs(small_dataset).to_csv(data, index=False)
    config = write_config(tmp_path, make_config(trainer={"max_steps": 1}))
    assert main(["train", "--config", config, "--dataset", str(data), "--output_directory", str(tmp_path / "out")]) == 1
    message = one_error_line(capsys.readouterr().err)
    assert f"'{data}': column 'sentence' (the input feature) is empty or missing in 3 row(s): 3, 7, 8" in message
    assert "preprocessing.empty_inputs: drop" in message


def test_drop_leaves_them_out_and_counts_them(make_config, small_dataset, tmp_path, capsys):
    data = tmp_path / "data.csv"
    rows_with_empty_inputs(small_dataset).to_csv(data, index=False)
    config = write_config(tmp_path, make_config(trainer={"max_steps": 1}, preprocessing={"empty_inputs": "drop"},
                                                generation={"max_new_tokens": 2}))
    out = tmp_path / "out"
    assert main(["train", "--config", config, "--dataset", str(data), "--output_directory", str(out)]) == 0
    statistics = json.loads((out / "experiment_run" / "training_statistics.json").read_text())["preprocessing"]
    assert sum(split["dropped_empty_input_rows"] for split in statistics.values()) == 3
    assert sum(split["rows"] for split in statistics.values()) == len(small_dataset) - 3

    # prediction with the same option: an empty prediction, flagged, in its place
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"sentence": "Alice moved to Paris in 2001."}\n{"other": 1}\n{"sentence": ""}\n{"sentence": "Hugo moved to Lima."}\n')
    capsys.readouterr()
    assert main(["predict", "--model_path", str(out / "experiment_run" / "model"), "--dataset", str(jsonl),
                 "--output_directory", str(tmp_path / "p")]) == 0
    predictions = pd.read_parquet(tmp_path / "p" / "predictions_run" / "predictions.parquet")
    assert predictions["record_empty_input"].tolist() == [False, True, True, False]
    assert predictions["record_response"].tolist()[1:3] == ["", ""]

    # evaluation leaves them out, and counts them
    assert main(["evaluate", "--model_path", str(out / "experiment_run" / "model"), "--dataset", str(data),
                 "--output_directory", str(tmp_path / "e")]) == 0
    statistics = json.loads((tmp_path / "e" / "evaluation_run" / "test_statistics.json").read_text())["record"]
    assert statistics["dropped_empty_input_rows"] == 3 and statistics["rows"] == len(small_dataset) - 3


def test_predict_refuses_jsonl_rows_without_the_input_key(trained_run, tmp_path, capsys):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"sentence": "Alice moved to Paris in 2001."}\n{"other": 1}\n')
    assert main(["predict", "--model_path", str(trained_run / "model"), "--dataset", str(jsonl),
                 "--output_directory", str(tmp_path / "p")]) == 1
    message = one_error_line(capsys.readouterr().err)
    assert "column 'sentence' (the input feature) is empty or missing in 1 row(s): 1 (counting from 0)" in message
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").rglob("predictions.*"))


def test_duplicate_csv_column_is_named(make_config, tmp_path, capsys):
    data = tmp_path / "dup.csv"
    data.write_text("sentence,record,sentence\nAlice moved.,person=Alice,Bruno moved.\n")
    config = write_config(tmp_path, make_config())
    assert main(["train", "--config", config, "--dataset", str(data), "--output_directory", str(tmp_path / "out")]) == 1
    message = one_error_line(capsys.readouterr().err)
    assert f"'{data}'" in message and "column 'sentence' appears twice in the header (again as column 3)" in message


@pytest.mark.parametrize("content, words", [
    ('{"sentence": "a", "record": "b"}\n{"sentence": "c", "record": \n', "line 2 is not valid JSON (Expecting value at column 29)"),
    ('{"sentence": "a", "record": "b"}\n\n[1, 2]\n', "line 3 holds a JSON list"),
    ('{"sentence": "a", "sentence": "b", "record": "c"}\n', "line 1: key 'sentence' appears twice"),
])
def test_jsonl_errors_name_the_line(content, words, make_config, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    config = write_config(tmp_path, make_config())
    assert main(["train", "--config", config, "--dataset", str(data), "--output_directory", str(tmp_path / "out")]) == 1
    message = one_error_line(capsys.readouterr().err)
    assert f"'{data}'" in message and words in message
