"""Dataset presets: alpaca, completion and input/output segments put the loss where documented."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.tokenize import IGNORE_INDEX
from ludwig_llm.errors import UserError
from ludwig_llm.schema import load_config
from ludwig_llm.schema.dataset_formats import ALPACA_PROMPT_NO_INPUT
from tests.tiny_models import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def fmt_for(tokenizer, feature: dict, output: str = "output"):
    config = load_config({"base_model": "unused", "input_features": [feature], "output_features": [{"name": output, "type": "text"}]})
    return structured_format(config, tokenizer)


def split_text(tokenizer, example):
    ids, labels = example["input_ids"], example["labels"]
    prompt = tokenizer.decode([i for i, l in zip(ids, labels) if l == IGNORE_INDEX])
    trained = tokenizer.decode([i for i, l in zip(ids, labels) if l != IGNORE_INDEX])
    return prompt, trained


def test_alpaca_with_and_without_input(tokenizer):
    fmt = fmt_for(tokenizer, {"name": "instruction", "type": "alpaca"})
    df = pd.DataFrame({"instruction": ["Add the numbers.", "Say hi."], "input": ["2 and 3", None], "output": ["5", "hi"]})
    encoded = fmt.encode_for_training(df)
    prompt, trained = split_text(tokenizer, encoded[0])
    assert prompt.startswith("<s>Below is an instruction") and "### Input:\n2 and 3\n\n### Response:\n" in prompt
    assert trained == "5</s>"
    prompt, trained = split_text(tokenizer, encoded[1])
    assert prompt == "<s>" + ALPACA_PROMPT_NO_INPUT.replace("{instruction}", "Say hi.") and trained == "hi</s>"
    with pytest.raises(UserError, match=r"row 1 \(counting from 0\), column 'output': the response is empty"):
        fmt.check_table(df.assign(output=["5", None]), "dataset", training=True)


def test_completion_trains_on_every_token_but_bos(tokenizer):
    fmt = fmt_for(tokenizer, {"name": "text", "type": "completion"})
    example = fmt.encode_for_training(pd.DataFrame({"text": ["The quick brown fox."]}))[0]
    assert example["labels"][0] == IGNORE_INDEX and example["input_ids"][0] == tokenizer.bos_token_id
    assert example["labels"][1:] == example["input_ids"][1:]
    assert tokenizer.decode(example["input_ids"][1:]) == "The quick brown fox.</s>"
    assert fmt.encode_prompts(pd.DataFrame({"text": ["The quick"]})) == [[tokenizer.bos_token_id] + tokenizer("The quick", add_special_tokens=False)["input_ids"]]


def test_input_output_segments_carry_loss_by_their_label(tokenizer):
    fmt = fmt_for(tokenizer, {"name": "segments", "type": "input_output"})
    segments = [{"text": "Q: 2+2?\n", "label": False}, {"text": "A: 4\n", "label": True}, {"text": "Q: 3+3?\n", "label": False},
                {"text": "A: 6</s>", "label": True}]
    df = pd.DataFrame({"segments": [json.dumps(segments)]})  # a CSV cell holds the list as JSON
    example = fmt.encode_for_training(df)[0]
    trained_runs, current = [], []
    for token, label in zip(example["input_ids"], example["labels"]):
        if label == IGNORE_INDEX:
            trained_runs, current = (trained_runs + [current] if current else trained_runs), []
        else:
            current.append(token)
    trained_runs.append(current)
    assert [tokenizer.decode(run) for run in trained_runs] == ["A: 4\n", "A: 6</s>"]
    # prediction reads up to the trailing trainable segment, which is the reference
    assert tokenizer.decode(fmt.encode_prompts(df)[0]) == "Q: 2+2?\nA: 4\nQ: 3+3?\n"
    assert fmt.targets(df) == ["A: 6</s>"]
    with pytest.raises(UserError, match="segment 0: 'label' must be true or false"):
        fmt.check_table(pd.DataFrame({"segments": [[{"text": "x", "label": "yes"}]]}), "dataset", training=True)
