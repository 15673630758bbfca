"""Sampling and splitting: random with probabilities and a seed, fixed by a column, separate sets."""

import pandas as pd
import pytest

from ludwig_llm.data.split import sample_table, split_table, splits_from_sets
from ludwig_llm.errors import UserError
from ludwig_llm.schema.preprocessing import PreprocessingConfig


def preprocessing(**values):
    return PreprocessingConfig.from_dict(values)


def table(rows=1000):
    return pd.DataFrame({"id": range(rows), "text": [f"row {i}" for i in range(rows)]})


def test_random_split_respects_probabilities():
    splits = split_table(table(), preprocessing(split={"type": "random", "probabilities": [0.7, 0.2, 0.1]}))
    assert splits.sizes() == {"train": 700, "validation": 200, "test": 100}
    ids = pd.concat([splits.train["id"], splits.validation["id"], splits.test["id"]])
    assert sorted(ids) == list(range(1000))  # every row exactly once


def test_random_split_is_reproducible_and_seeded():
    first = split_table(table(), preprocessing(split_seed=7))
    again = split_table(table(), preprocessing(split_seed=7))
    other = split_table(table(), preprocessing(split_seed=8))
    assert first.test["id"].tolist() == again.test["id"].tolist()
    assert first.test["id"].tolist() != other.test["id"].tolist()


def test_splits_keep_original_order_and_fresh_index():
    splits = split_table(table(), preprocessing())
    for _, df in splits.items():
        assert df["id"].is_monotonic_increasing
        assert df.index.tolist() == list(range(len(df)))


def test_fixed_split_with_ints_and_strings():
    df = pd.DataFrame({"text": list("abcdef"), "fold": [0, 1, 2, 0, 1, 2]})
    splits = split_table(df, preprocessing(split={"type": "fixed", "column": "fold"}))
    assert splits.train["text"].tolist() == ["a", "d"]
    assert splits.validation["text"].tolist() == ["b", "e"]
    assert splits.test["text"].tolist() == ["c", "f"]

    df = pd.DataFrame({"text": list("abcde"), "split": ["train", "Validation", "test", "0", "2.0"]})
    splits = split_table(df, preprocessing(split={"type": "fixed"}))
    assert splits.train["text"].tolist() == ["a", "d"]
    assert splits.validation["text"].tolist() == ["b"]
    assert splits.test["text"].tolist() == ["c", "e"]


def test_fixed_split_bad_value_names_column_and_row():
    df = pd.DataFrame({"text": list("abc"), "split": [0, 1, 5]})
    with pytest.raises(UserError, match=r"split column 'split', row 2 .*5 is not a split"):
        split_table(df, preprocessing(split={"type": "fixed"}))
    df = pd.DataFrame({"text": list("ab"), "split": ["train", None]})
    with pytest.raises(UserError, match="row 1"):
        split_table(df, preprocessing(split={"type": "fixed"}))


def test_fixed_split_missing_column_is_named():
    with pytest.raises(UserError, match="no column 'fold'.*columns are: id, text"):
        split_table(table(10), preprocessing(split={"type": "fixed", "column": "fold"}))


def test_sample_ratio_and_size():
    sampled = sample_table(table(), preprocessing(sample_ratio=0.25))
    assert len(sampled) == 250
    assert sampled["id"].is_monotonic_increasing
    assert sampled["id"].tolist() == sample_table(table(), preprocessing(sample_ratio=0.25))["id"].tolist()
    assert len(sample_table(table(), preprocessing(sample_size=10, sample_ratio=0.5))) == 10  # size wins
    assert len(sample_table(table(5), preprocessing(sample_size=10))) == 5
    assert sample_table(table(5), preprocessing()) is not None


def test_splits_from_sets_fills_missing_with_empty_frames():
    splits = splits_from_sets(table(3), None, table(2))
    assert splits.sizes() == {"train": 3, "validation": 0, "test": 2}
    assert list(splits.validation.columns) == ["id", "text"]
