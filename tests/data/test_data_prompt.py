"""Prompt rendering: templates, task, other columns, chat template, safety, missing columns."""

import math

import pandas as pd
import pytest

from ludwig_llm.data.prompt import PromptRenderer, model_input_text, prompt_texts
from ludwig_llm.errors import UserError
from ludwig_llm.schema import load_config
from ludwig_llm.schema.llm import LLMConfig
from ludwig_llm.schema.template import DEFAULT_TASK_TEMPLATE
from tests.tiny_models import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def config(**prompt):
    return load_config({
        "base_model": "tiny",
        "input_features": [{"name": "review", "type": "text"}],
        "output_features": [{"name": "label", "type": "text"}],
        "prompt": prompt,
    })


ROW = {"review": "Great film", "label": "positive", "author": "Ann", "stars": 5}


def test_default_template_is_the_sample_alone():
    renderer = PromptRenderer(config())
    assert renderer.template == "{__sample__}"
    assert renderer.render(ROW) == "Great film"


def test_task_alone_uses_the_default_task_template():
    renderer = PromptRenderer(config(task="Classify the sentiment."))
    assert renderer.template == DEFAULT_TASK_TEMPLATE
    assert renderer.render(ROW) == "Task: Classify the sentiment.\n\nInput: Great film\n\nResponse:"


def test_template_with_task_and_other_columns():
    renderer = PromptRenderer(config(task="Rate it.", template="{__task__} {author} ({stars}) wrote: {__sample__} {{literal}}"))
    assert renderer.render(ROW) == "Rate it. Ann (5) wrote: Great film {literal}"
    assert renderer.render(pd.Series(ROW)) == "Rate it. Ann (5) wrote: Great film {literal}"


def test_missing_values_render_empty_and_values_are_never_templates():
    renderer = PromptRenderer(config(template="[{author}] {__sample__}"))
    assert renderer.render({**ROW, "author": math.nan}) == "[] Great film"
    assert renderer.render({**ROW, "author": None}) == "[] Great film"
    assert renderer.render({**ROW, "review": "{author.__class__}"}) == "[Ann] {author.__class__}"


def test_render_all_uses_the_retriever_for_context():
    class Retriever:
        def context_for(self, row):
            return f"example for {row['review']}"

    cfg = config(template="{__context__}\n{__sample__}", retrieval={"type": "random", "k": 1})
    df = pd.DataFrame([ROW, {**ROW, "review": "Dull"}])
    assert PromptRenderer(cfg, Retriever()).render_all(df) == ["example for Great film\nGreat film", "example for Dull\nDull"]
    with pytest.raises(ValueError, match="no retriever"):
        PromptRenderer(cfg).render(ROW)


@pytest.mark.parametrize("template", ["{review.__class__}", "{review[0]}", "{review!r}", "{review:>10}", "{}"])
def test_unsafe_templates_are_refused_even_without_config_validation(template):
    # from_dict skips the cross-field checks that load_config runs: PromptRenderer must refuse on its own.
    cfg = LLMConfig.from_dict({
        "base_model": "tiny",
        "input_features": [{"name": "review", "type": "text"}],
        "output_features": [{"name": "label", "type": "text"}],
        "prompt": {"template": template},
    })
    assert cfg.prompt.template == template
    with pytest.raises(UserError, match="prompt.template"):
        PromptRenderer(cfg)


def test_missing_columns_are_all_named():
    renderer = PromptRenderer(config(template="{author} {year}: {__sample__}"))
    df = pd.DataFrame({"text": ["x"], "author": ["Ann"]})
    with pytest.raises(UserError) as error:
        renderer.check_columns(df, "training set 'train.csv'")
    message = str(error.value)
    assert "training set 'train.csv'" in message
    assert "'review' (the input feature's column)" in message
    assert "'year' (named in prompt.template)" in message
    assert "'author'" not in message.split("columns are")[0]
    renderer.check_columns(pd.DataFrame({"review": ["x"], "author": ["a"], "year": [1]}), "dataset")


def test_chat_template_wraps_the_prompt(tokenizer):
    text = model_input_text("Hello", tokenizer, apply_chat_template=True)
    assert text == "<|user|>\nHello</s>\n<|assistant|>\n"
    assert model_input_text("Hello", tokenizer, apply_chat_template=False) == "Hello"
    texts = prompt_texts(pd.DataFrame([ROW]), tokenizer, config(apply_chat_template=True))
    assert texts == ["<|user|>\nGreat film</s>\n<|assistant|>\n"]


def test_chat_template_missing_is_a_user_error():
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        model_input_text("Hello", tokenizer, apply_chat_template=True)


def test_a_template_of_dataset_columns_makes_the_input_feature_name_a_label():
    """Ludwig's way: with `{instruction}`/`{input}` and no `{__sample__}`, the input feature's column is not read."""
    renderer = PromptRenderer(config(template="### Instruction: {instruction}\n### Input: {input}\n### Response:"))
    assert not renderer.reads_input_column()
    assert renderer.required_columns() == ["instruction", "input"] == renderer.input_columns()
    alpaca = pd.DataFrame({"instruction": ["Add one to 2."], "input": [""], "output": ["3"]})  # no 'review' column
    renderer.check_columns(alpaca, "dataset")
    assert renderer.render_all(alpaca) == ["### Instruction: Add one to 2.\n### Input: \n### Response:"]
    with pytest.raises(UserError, match=r"no column 'input' \(named in prompt.template\)"):
        renderer.check_columns(alpaca.drop(columns="input"), "dataset")
    # with {__sample__} the input feature's column is read (and required) as before
    both = PromptRenderer(config(template="{instruction}: {__sample__}"))
    assert both.reads_input_column() and both.required_columns() == ["review", "instruction"]
    with pytest.raises(UserError, match="'review' \\(the input feature's column\\)"):
        both.check_columns(alpaca, "dataset")
