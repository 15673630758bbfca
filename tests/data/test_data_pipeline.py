"""prepare_data end to end: sources, checks and their messages, cache reuse, debug report."""

import os

import pandas as pd
import pytest

from ludwig_llm.data.pipeline import debug_report, prepare_data, preprocess_summary
from ludwig_llm.data.tokenize import IGNORE_INDEX
from ludwig_llm.errors import UserError
from ludwig_llm.schema import load_config
from tests.tiny_models import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LUDWIG_LLM_CACHE", str(root))
    return root


def config(**overrides):
    data = {
        "base_model": "tiny",
        "input_features": [{"name": "question", "type": "text"}],
        "output_features": [{"name": "answer", "type": "text"}],
        "prompt": {"task": "Answer the question."},
        "trainer": {"type": "finetune"},
    }
    data.update(overrides)
    return load_config(data)


def table(rows=40):
    return pd.DataFrame({
        "question": [f"What is {i} plus {i}?" for i in range(rows)],
        "answer": [str(2 * i) for i in range(rows)],
    })


def test_dataset_is_split_rendered_and_tokenized(tokenizer, cache_dir):
    prepared = prepare_data(config(), tokenizer, dataset=table(), progress=False)
    assert prepared.splits.sizes() == {"train": 32, "validation": 4, "test": 4}
    assert [len(prepared.train), len(prepared.validation), len(prepared.test)] == [32, 4, 4]
    assert prepared.stats["train"]["rows"] == 32 and prepared.stats["train"]["cache_hit"] is False
    example = prepared.train[0]
    answer = prepared.splits.train["answer"][0]
    target = [label for label in example["labels"] if label != IGNORE_INDEX]
    assert target == tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert prepared.cache_path.startswith(str(cache_dir / "datasets"))
    assert "train" in preprocess_summary(prepared)


def test_cache_hit_on_second_call_and_miss_when_preprocessing_changes(tokenizer, cache_dir):
    first = prepare_data(config(), tokenizer, dataset=table(), progress=False)
    again = prepare_data(config(), tokenizer, dataset=table(), progress=False)
    assert not first.cache_hit and again.cache_hit
    assert again.stats["validation"]["cache_hit"] is True
    assert again.cache_path == first.cache_path
    assert [e["input_ids"] for e in again.train] == [e["input_ids"] for e in first.train]
    assert [e["labels"] for e in again.train] == [e["labels"] for e in first.train]
    assert again.train.row_numbers == first.train.row_numbers
    assert "reused" in preprocess_summary(again)

    changed = prepare_data(config(preprocessing={"split_seed": 1}), tokenizer, dataset=table(), progress=False)
    assert not changed.cache_hit and changed.cache_path != first.cache_path

    other_data = table()
    other_data.loc[0, "answer"] = "zero"
    assert not prepare_data(config(), tokenizer, dataset=other_data, progress=False).cache_hit

    chat = build_tiny_tokenizer()
    chat.chat_template = "{{ bos_token }}" + chat.chat_template
    assert not prepare_data(config(), chat, dataset=table(), progress=False).cache_hit

    off = prepare_data(config(preprocessing={"cache": False}), tokenizer, dataset=table(), progress=False)
    assert not off.cache_hit and off.cache_path is None
    assert not prepare_data(config(), tokenizer, dataset=table(), use_cache=False, progress=False).cache_hit


def test_damaged_cache_entry_is_rebuilt(tokenizer):
    first = prepare_data(config(), tokenizer, dataset=table(), progress=False)
    with open(os.path.join(first.cache_path, "train.arrow"), "wb") as f:
        f.write(b"garbage")
    rebuilt = prepare_data(config(), tokenizer, dataset=table(), progress=False)
    assert not rebuilt.cache_hit and len(rebuilt.train) == 32
    assert prepare_data(config(), tokenizer, dataset=table(), progress=False).cache_hit


def test_separate_sets_from_files(tokenizer, tmp_path):
    train, validation = tmp_path / "train.csv", tmp_path / "validation.jsonl"
    table(10).to_csv(train, index=False)
    table(3).to_json(validation, orient="records", lines=True)
    prepared = prepare_data(config(), tokenizer, training_set=str(train), validation_set=str(validation), progress=False)
    assert prepared.splits.sizes() == {"train": 10, "validation": 3, "test": 0}
    assert len(prepared.test) == 0
    sampled = prepare_data(config(preprocessing={"sample_size": 6}), tokenizer, training_set=str(train),
                           validation_set=str(validation), progress=False)
    assert sum(sampled.splits.sizes().values()) == 6


def test_fixed_split_from_the_data(tokenizer):
    df = table(6).assign(split=["train", "train", "train", "validation", "test", "train"])
    prepared = prepare_data(config(preprocessing={"split": {"type": "fixed"}}), tokenizer, dataset=df, progress=False)
    assert prepared.splits.sizes() == {"train": 4, "validation": 1, "test": 1}


def test_retriever_factory_gets_the_training_split(tokenizer):
    seen = {}

    class Retriever:
        def context_for(self, row):
            return "Input: What is 1 plus 1?\nResponse: 2"

    def factory(train_df):
        seen["rows"] = len(train_df)
        return Retriever()

    cfg = config(prompt={"task": "Add.", "retrieval": {"type": "random", "k": 1}})
    prepared = prepare_data(cfg, tokenizer, dataset=table(), retriever_factory=factory, progress=False)
    assert seen["rows"] == 32 and isinstance(prepared.retriever, Retriever)
    report = debug_report(cfg, tokenizer, prepared.splits.train, rows=1, retriever=prepared.retriever)
    assert "Examples:" in report and "What is 1 plus 1?" in report


# --- errors name the column, the row or the path ---


def test_missing_input_column(tokenizer):
    with pytest.raises(UserError, match=r"dataset \(DataFrame\) has no column 'question' \(the input feature's column\)"):
        prepare_data(config(), tokenizer, dataset=table().rename(columns={"question": "q"}), progress=False)


def test_missing_output_column(tokenizer, tmp_path):
    path = tmp_path / "test.csv"
    table(3).drop(columns="answer").to_csv(path, index=False)
    with pytest.raises(UserError, match=f"test set '{path}' has no column 'answer' \\(the output feature's column\\)"):
        prepare_data(config(), tokenizer, training_set=table(), test_set=str(path), progress=False)


def test_template_naming_an_absent_column(tokenizer):
    cfg = config(prompt={"template": "{topic}: {__sample__}"})
    with pytest.raises(UserError, match=r"no column 'topic' \(named in prompt.template\)"):
        prepare_data(cfg, tokenizer, dataset=table(), progress=False)


def test_nulls_in_target_name_column_and_first_row(tokenizer):
    df = table()
    df.loc[[5, 9], "answer"] = None
    with pytest.raises(UserError, match=r"column 'answer' .* 2 row\(s\), first at row 5"):
        prepare_data(config(), tokenizer, dataset=df, progress=False)


def test_empty_and_unreadable_datasets(tokenizer, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("question,answer\n")
    with pytest.raises(UserError, match="empty.csv' is empty"):
        prepare_data(config(), tokenizer, dataset=str(empty), progress=False)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"nope")
    with pytest.raises(UserError, match="broken.parquet.*unreadable"):
        prepare_data(config(), tokenizer, dataset=str(broken), progress=False)
    with pytest.raises(UserError, match="no data"):
        prepare_data(config(), tokenizer, progress=False)
    with pytest.raises(UserError, match="not both"):
        prepare_data(config(), tokenizer, dataset=table(), training_set=table(), progress=False)


def test_empty_training_split(tokenizer):
    df = table(4).assign(split=[1, 1, 2, 2])
    with pytest.raises(UserError, match="training split is empty"):
        prepare_data(config(preprocessing={"split": {"type": "fixed"}}), tokenizer, dataset=df, progress=False)


# --- debug report ---


def test_debug_report_shows_prompt_ids_and_loss_tokens(tokenizer):
    report = debug_report(config(), tokenizer, table(), rows=2)
    assert report.count("=== row") == 2
    assert "Task: Answer the question." in report and "What is 0 plus 0?" in report
    first = report.split("=== row 1")[0]
    assert '["0"] ["</s>"]' in first  # target and EOS carry loss
    assert '"<s>"' in first and '["<s>"]' not in first  # the prompt does not
    assert "input_ids (" in first


def test_debug_report_without_target_and_with_chat_template(tokenizer):
    cfg = config(prompt={"task": "Answer.", "apply_chat_template": True})
    report = debug_report(cfg, tokenizer, table().drop(columns="answer"), rows=1)
    assert '"<|assistant|>"' in report
    assert "0 with loss" in report and '["' not in report  # no target: no token carries loss
