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


class SeededRetriever:
    """One training row as the example for each prompt, chosen by ``seed`` (like the random retriever)."""

    def __init__(self, train_df, seed):
        self.rows = train_df.to_dict("records")
        self.seed = seed

    def context_for(self, row):
        example = self.rows[(self.seed * 7919 + len(row["q"])) % len(self.rows)]
        return f"Input: {example['q']}\nResponse: {example['a']}"

    def metadata(self):
        return {"type": "random", "k": 1, "seed": self.seed, "rows": len(self.rows)}


def test_key_depends_on_the_retrieval_seed(tokenizer):
    cfg = config()
    assert encoded_cache.cache_key(cfg, tokenizer, "data", {"type": "random", "k": 1, "seed": 1}) != \
        encoded_cache.cache_key(cfg, tokenizer, "data", {"type": "random", "k": 1, "seed": 2})


def test_a_new_retrieval_seed_renders_new_prompts_instead_of_reusing_the_cache(tokenizer, monkeypatch, tmp_path):
    """`--random_seed` changes the retriever's seed: the cached prompts with the old examples must not be reused."""
    import pandas as pd

    from ludwig_llm.data.pipeline import prepare_data

    monkeypatch.setenv("LUDWIG_LLM_CACHE", str(tmp_path))
    cfg = load_config({
        "base_model": "tiny",
        "input_features": [{"name": "q", "type": "text"}],
        "output_features": [{"name": "a", "type": "text"}],
        "prompt": {"template": "{__context__}\nInput: {q}\nResponse:", "retrieval": {"type": "random", "k": 1}},
    })
    data = pd.DataFrame({"q": [f"What is {i} plus {i}?" for i in range(40)], "a": [str(2 * i) for i in range(40)]})

    def prepare(seed):
        return prepare_data(cfg, tokenizer, dataset=data, retriever_factory=lambda train: SeededRetriever(train, seed),
                            progress=False)

    first, again, reseeded = prepare(1), prepare(1), prepare(2)
    assert again.cache_hit and again.train.examples == first.train.examples
    assert not reseeded.cache_hit
    uncached = prepare_data(cfg, tokenizer, dataset=data, retriever_factory=lambda train: SeededRetriever(train, 2),
                            use_cache=False, progress=False)
    assert reseeded.train.examples == uncached.train.examples != first.train.examples
