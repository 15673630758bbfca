"""The encoded-data cache: where it lives, what its key depends on, atomic writes."""

import os

import pytest

from ludwig_llm.data import cache as encoded_cache
from ludwig_llm.data.tokenize import EncodedRows, EncodingStats
from ludwig_llm.schema import load_config
from tests.tiny_models import build_tiny_tokenizer


def config(**preprocessing):
    return load_config({
        "base_model": "tiny",
        "input_features": [{"name": "q", "type": "text"}],
        "output_features": [{"name": "a", "type": "text"}],
        "preprocessing": preprocessing,
    })


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LUDWIG_LLM_CACHE", raising=False)
    assert encoded_cache.datasets_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "ludwig_llm", "datasets")
    monkeypatch.setenv("LUDWIG_LLM_CACHE", str(tmp_path))
    assert encoded_cache.datasets_cache_dir() == str(tmp_path / "datasets")


def test_key_depends_on_preprocessing_tokenizer_and_data(tokenizer):
    key = encoded_cache.cache_key(config(), tokenizer, "data")
    assert key == encoded_cache.cache_key(config(), build_tiny_tokenizer(), "data")
    assert key != encoded_cache.cache_key(config(train_on_inputs=True), tokenizer, "data")
    assert key != encoded_cache.cache_key(config(), tokenizer, "other data")
    assert key != encoded_cache.cache_key(config(), build_tiny_tokenizer(vocab_size=320), "data")


def test_tokenizer_loaded_from_disk_has_a_stable_fingerprint(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path / "tok")
    first = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    second = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert encoded_cache.tokenizer_fingerprint(first) == encoded_cache.tokenizer_fingerprint(second)
    assert first("a")["input_ids"][0] == first.bos_token_id


def test_save_and_load_round_trip_leaves_no_temporary_files(monkeypatch, tmp_path):
    monkeypatch.setenv("LUDWIG_LLM_CACHE", str(tmp_path))
    splits = {
        "train": EncodedRows([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}], EncodingStats(rows=2, dropped_rows=1), [1]),
        "validation": EncodedRows(),
        "test": EncodedRows([{"input_ids": [4], "labels": [4]}], EncodingStats(rows=1, truncated_target_rows=1), [0]),
    }
    assert encoded_cache.load_encoded("k" * 32) is None
    path = encoded_cache.save_encoded("k" * 32, splits)
    assert os.listdir(tmp_path / "datasets") == ["k" * 32]
    loaded = encoded_cache.load_encoded("k" * 32)
    assert loaded["train"].examples == splits["train"].examples
    assert loaded["train"].row_numbers == [1]
    assert loaded["train"].stats == splits["train"].stats
    assert len(loaded["validation"]) == 0
    assert loaded["test"].stats.truncated_target_rows == 1
    # a second writer of the same entry neither fails nor leaves its temporary directory behind
    assert encoded_cache.save_encoded("k" * 32, splits) == path
    assert os.listdir(tmp_path / "datasets") == ["k" * 32]
