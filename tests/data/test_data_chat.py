"""Chat inputs: parsing, the loss mask of every chat template, truncation, and row-naming errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ludwig_llm.data.chat import ChatFormat, parse_turns
from ludwig_llm.data.formats import RowError
from ludwig_llm.data.tokenize import IGNORE_INDEX
from ludwig_llm.errors import UserError
from ludwig_llm.schema import load_config
from ludwig_llm.schema.chat import ChatTemplate
from ludwig_llm.schema.registry import chat_template_registry
from tests.tiny_models import build_tiny_tokenizer

CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "My name is Ada. What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And my name?"},
    {"role": "assistant", "content": "Your name is Ada."},
]


def chat_config(template=None, **preprocessing):
    prompt = {"chat_template": template} if template else {}
    return load_config({
        "base_model": "unused", "prompt": prompt,
        "input_features": [{"name": "messages", "type": "chat", "preprocessing": preprocessing}],
        "output_features": [{"name": "reply", "type": "text"}],
    })


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from ludwig_llm.models.resolve import resolve_base_model

    return AutoTokenizer.from_pretrained(resolve_base_model("smollm2-135m-instruct"))


def loss_texts(fmt, conversation):
    """The decoded runs of loss-carrying tokens of one training row."""
    ids, labels, *_ = fmt._fit(lambda drop: fmt.pieces({"messages": conversation}, None, for_generation=False, drop=drop), None)
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    if current:
        runs.append(current)
    return [fmt.tokenizer.decode(run) for run in runs]


def expected(conversation, end_of_turn):
    return [turn["content"] + end_of_turn for turn in conversation if turn["role"] == "assistant"]


def conversation_for(name):
    # Templates without a system role (mistral, gemma) merge it into the first user turn; all keep assistant turns intact.
    return CONVERSATION


@pytest.mark.parametrize("name", chat_template_registry.names())
def test_every_registered_template_puts_loss_exactly_on_assistant_contents_and_end_of_turn(name, tiny_tokenizer):
    template: ChatTemplate = chat_template_registry.get(name)
    fmt = ChatFormat(chat_config(name), tiny_tokenizer)
    assert fmt.end_of_turn() == template.end_of_turn
    assert loss_texts(fmt, CONVERSATION) == expected(CONVERSATION, template.end_of_turn)


@pytest.mark.parametrize("name", chat_template_registry.names())
def test_last_turn_only_puts_loss_on_the_final_assistant_turn(name, tiny_tokenizer):
    fmt = ChatFormat(chat_config(name, train_on_last_turn_only=True), tiny_tokenizer)
    assert loss_texts(fmt, CONVERSATION) == ["Your name is Ada." + chat_template_registry.get(name).end_of_turn]


def test_smollm2_own_template_masks_assistant_turns(smollm2_tokenizer):
    fmt = ChatFormat(chat_config(), smollm2_tokenizer)
    assert fmt.end_of_turn() == "<|im_end|>"
    assert loss_texts(fmt, CONVERSATION) == expected(CONVERSATION, "<|im_end|>")
    # the end-of-turn marker is one token, so generation stops on it
    assert fmt.stop_token_ids() == [smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_generation_prompt_is_the_training_prefix(smollm2_tokenizer):
    fmt = ChatFormat(chat_config(), smollm2_tokenizer)
    row = {"messages": CONVERSATION[:-1], "reply": "Your name is Ada."}
    train_ids, labels, *_ = fmt._encode_training_row(row, "train", 0)
    prompt = fmt.encode_prompts(pd.DataFrame([row]))[0]
    first_loss = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX and i > len(prompt) - 1)
    assert train_ids[:len(prompt)] == prompt and first_loss == len(prompt)
    text = smollm2_tokenizer.decode(prompt)
    assert text == smollm2_tokenizer.apply_chat_template(CONVERSATION[:-1], tokenize=False, add_generation_prompt=True)


def test_sharegpt_and_json_string_cells_parse_like_openai():
    sharegpt = [{"from": "system", "value": "s"}, {"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]
    openai = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    assert parse_turns(sharegpt, "c") == openai
    assert parse_turns(json.dumps(sharegpt), "c") == openai


@pytest.mark.parametrize("cell, message", [
    ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
    ([{"from": "bot", "value": "x"}], "unknown role 'bot'"),
    ([{"role": "user"}], "turn 0 (user): the turn has no content"),
    ("not json", "not JSON"),
    ('{"role": "user"}', "not a list of turns"),
    (42, "not a list of turns"),
])
def test_bad_cells_are_refused_with_the_column_named(cell, message):
    with pytest.raises(RowError, match="column 'c'") as error:
        parse_turns(cell, "c")
    assert message in str(error.value)


def test_errors_name_the_table_row_and_column(tiny_tokenizer):
    fmt = ChatFormat(chat_config("chatml"), tiny_tokenizer)
    df = pd.DataFrame({"messages": [CONVERSATION, [{"role": "user", "content": "hi"}]]})
    with pytest.raises(UserError, match=r"dataset 'x', row 1 \(counting from 0\), column 'messages': a training conversation needs an assistant turn"):
        fmt.check_table(df, "dataset 'x'", training=True)
    fmt.check_table(df, "dataset 'x'", training=False)  # prediction needs no assistant turn


def test_roles_out_of_order_are_refused_where_the_template_cannot_render_them(tiny_tokenizer):
    fmt = ChatFormat(chat_config("mistral"), tiny_tokenizer)
    twice = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    df = pd.DataFrame({"messages": [twice]})
    with pytest.raises(UserError, match=r"train split, row 0 \(counting from 0\), column 'messages': the chat template cannot render.*alternate"):
        fmt.encode_for_training(df, split="train")
    ChatFormat(chat_config("chatml"), tiny_tokenizer).encode_for_training(df)  # ChatML renders any order


def test_truncation_drops_oldest_turns_keeps_system_and_counts_rows(tiny_tokenizer):
    long = [CONVERSATION[0]] + [turn for i in range(6) for turn in (
        {"role": "user", "content": f"question number {i} " * 5}, {"role": "assistant", "content": f"answer {i}"})]
    short = len(ChatFormat(chat_config("chatml"), tiny_tokenizer).encode_for_training(pd.DataFrame({"messages": [CONVERSATION]}))[0]["input_ids"])
    limit = short + 10
    fmt = ChatFormat(chat_config("chatml", max_sequence_length=limit), tiny_tokenizer)
    df = pd.DataFrame({"messages": [long, CONVERSATION]})
    encoded = fmt.encode_for_training(df)
    assert encoded.stats.truncated_turn_rows == 1 and encoded.stats.truncated_prompt_rows == 0
    ids = encoded.examples[0]["input_ids"]
    text = tiny_tokenizer.decode(ids)
    assert len(ids) <= limit and text.startswith("<|im_start|>system\nYou answer briefly.") and text.rstrip().endswith("answer 5<|im_end|>")
    assert "question number 0" not in text


def test_output_column_is_the_final_assistant_turn_and_task_becomes_system(tiny_tokenizer):
    config = chat_config("chatml")
    config.prompt.task = "Be kind."
    fmt = ChatFormat(config, tiny_tokenizer)
    row = {"messages": [{"role": "user", "content": "hi"}], "reply": "hello"}
    ids, labels, *_ = fmt._encode_training_row(row, "train", 0)
    assert tiny_tokenizer.decode(ids) == "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    assert tiny_tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE_INDEX]) == "hello<|im_end|>"


# Not incremental: the last turn is rendered differently from earlier ones; assistant text is marked for the mask.
GENERATION_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ 'A' + ('!' if loop.last else '') + ': ' }}"
    "{% generation %}{{ message['content'] + ' <end>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ 'U: ' + message['content'] + '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)


def test_a_template_that_is_not_incremental_uses_its_generation_blocks(tiny_tokenizer):
    import copy

    tokenizer = copy.copy(tiny_tokenizer)
    tokenizer.chat_template = GENERATION_TEMPLATE
    fmt = ChatFormat(chat_config(), tokenizer)
    assert loss_texts(fmt, CONVERSATION[1:]) == ["It is 4. <end>", "Your name is Ada. <end>"]
    tokenizer.chat_template = GENERATION_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    with pytest.raises(RowError, match=r"does not render the conversation turn by turn .* marks no \{% generation %\} blocks"):
        ChatFormat(chat_config(), tokenizer).pieces({"messages": CONVERSATION[1:]}, None, for_generation=False)


def test_the_chat_example_configs_load_and_both_forms_hold_the_same_conversations(smollm2_tokenizer):
    import os

    from ludwig_llm.data.load import load_table

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "chat")
    openai_config = load_config(os.path.join(example, "config.yaml"))
    sharegpt_config = load_config(os.path.join(example, "config_sharegpt.yaml"))
    for split, rows in (("train", 120), ("test", 30)):
        openai = load_table(os.path.join(example, f"{split}.jsonl"))[openai_config.input_feature.column_name()]
        sharegpt = load_table(os.path.join(example, f"{split}_sharegpt.jsonl"))[sharegpt_config.input_feature.column_name()]
        assert len(openai) == len(sharegpt) == rows
        assert [parse_turns(cell, "messages") for cell in openai] == [parse_turns(cell, "conversations") for cell in sharegpt]
    # so both forms train on exactly the same tokens and loss masks
    train = {name: load_table(os.path.join(example, f"{name}.jsonl")) for name in ("train", "train_sharegpt")}
    openai_rows = ChatFormat(openai_config, smollm2_tokenizer).encode_for_training(train["train"]).examples
    sharegpt_rows = ChatFormat(sharegpt_config, smollm2_tokenizer).encode_for_training(train["train_sharegpt"]).examples
    assert openai_rows == sharegpt_rows and len(openai_rows) == 120
