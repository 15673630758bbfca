"""Cells longer than preprocessing.max_cell_characters: refused at training and prediction, naming column and rows,
before any cell is rendered or tokenized; cells within the cap train as before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ludwig_llm.api import LudwigLLM
from ludwig_llm.cli import main
from ludwig_llm.data.rows import cell_length
from ludwig_llm.errors import UserError
from tests.reliability.conftest import one_error_line

DEFAULT_CAP = 1_000_000


def with_long_cell(df, row: int, column: str, characters: int):
    df = df.copy()
    df.loc[row, column] = "x" * characters
    return df


def test_training_refuses_a_cell_over_the_default_cap(make_config, small_dataset, tmp_path):
    dataset = with_long_cell(small_dataset, 5, "sentence", DEFAULT_CAP + 1)
    with pytest.raises(UserError) as raised:
        LudwigLLM(make_config(trainer={"max_steps": 1})).train(dataset=dataset, output_directory=str(tmp_path / "out"))
    message = str(raised.value)
    assert f"column 'sentence' has a cell longer than preprocessing.max_cell_characters ({DEFAULT_CAP}) in 1 row(s): 5 (counting from 0)" in message
    assert f"the longest {DEFAULT_CAP + 1} characters" in message and "raise preprocessing.max_cell_characters" in message


def test_training_refuses_long_targets_with_a_configured_cap(make_config, small_dataset, tmp_path):
    dataset = with_long_cell(with_long_cell(small_dataset, 2, "record", 300), 9, "record", 250)
    config = make_config(trainer={"max_steps": 1}, preprocessing={"max_cell_characters": 200})
    with pytest.raises(UserError, match=r"column 'record' has a cell longer than preprocessing.max_cell_characters \(200\) "
                                        r"in 2 row\(s\): 2, 9 \(counting from 0\), the longest 300 characters"):
        LudwigLLM(config).train(dataset=dataset, output_directory=str(tmp_path / "out"))


def test_a_cell_within_the_cap_trains(make_config, small_dataset, tmp_path):
    dataset = with_long_cell(small_dataset, 5, "sentence", 200)
    config = make_config(trainer={"max_steps": 1}, preprocessing={"max_cell_characters": 200}, generation={"max_new_tokens": 2})
    result = LudwigLLM(config).train(dataset=dataset, output_directory=str(tmp_path / "out"))
    assert (tmp_path / "out").exists() and result is not None


def test_prediction_refuses_a_long_cell_naming_column_and_row(trained_run, small_dataset, tmp_path, capsys):
    data = tmp_path / "rows.csv"
    with_long_cell(small_dataset.head(4), 1, "sentence", DEFAULT_CAP + 10).to_csv(data, index=False)
    assert main(["predict", "--model_path", str(trained_run / "model"), "--dataset", str(data),
                 "--output_directory", str(tmp_path / "p")]) == 1
    message = one_error_line(capsys.readouterr().err)
    assert f"'{data}': column 'sentence' has a cell longer than preprocessing.max_cell_characters ({DEFAULT_CAP}) " \
           f"in 1 row(s): 1 (counting from 0)" in message
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").rglob("predictions.*"))


def test_training_refuses_a_chat_cell_whose_turns_are_too_long(make_config, tmp_path):
    def chat(content):
        return [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}]
    dataset = pd.DataFrame({"messages": [chat("hi")] * 3 + [chat("x" * 150)] + [chat("hi")] * 4})
    config = make_config(input_features=[{"name": "messages", "type": "chat"}], output_features=[{"name": "reply", "type": "text"}],
                         trainer={"max_steps": 1}, preprocessing={"max_cell_characters": 150})
    config.pop("prompt")
    with pytest.raises(UserError, match=r"column 'messages' has a cell longer than .* in 1 row\(s\): 3 \(counting from 0\)"):
        LudwigLLM(config).train(dataset=dataset, output_directory=str(tmp_path / "out"))


def test_list_cells_are_measured_as_json():
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    expected = len('[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]')
    assert cell_length(turns) == expected
    assert cell_length(np.array(turns, dtype=object)) == expected  # as Parquet/hub datasets hand them over
    assert cell_length(None) == 0 and cell_length(float("nan")) == 0 and cell_length("abc") == 3
