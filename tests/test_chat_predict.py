"""Chat inputs end to end on the tiny model: in-context learning (trainer none), a short fine-tuning run,
prediction of the next assistant turn equal to plain transformers generation on the chat template, evaluation
against the output column or the final assistant turn, the debug view, and stopping at an end-of-turn token."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from ludwig_llm.api import LudwigLLM
from ludwig_llm.data.pipeline import debug_report
from ludwig_llm.inference.generation import generate
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.schema import load_config
from ludwig_llm.schema.generation import GenerationConfig
from tests.conftest import greedy_tokens

MAX_NEW_TOKENS = 6


def conversation(i: int, with_answer: bool):
    turns = [{"role": "user", "content": f"My code is {i}{i}."}, {"role": "assistant", "content": "Noted."},
             {"role": "user", "content": "What is my code?"}]
    return turns + [{"role": "assistant", "content": f"{i}{i}"}] if with_answer else turns


@pytest.fixture(scope="module")
def chat_config(make_config):
    def build(**sections):
        config = make_config(input_features=[{"name": "messages", "type": "chat"}], output_features=[{"name": "reply", "type": "text"}],
                             generation={"max_new_tokens": MAX_NEW_TOKENS}, **sections)
        config.pop("prompt")
        return config
    return build


def test_trainer_none_predicts_the_next_assistant_turn_as_plain_generation_does(chat_config, tiny_model_dir, tmp_path):
    train = pd.DataFrame({"messages": [conversation(i, True) for i in range(8)]})
    result = LudwigLLM(chat_config(trainer={"type": "none", "_replace": True}, adapter=None)).train(
        dataset=train, output_directory=str(tmp_path))
    model = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR))
    rows = pd.DataFrame({"messages": [conversation(i, False) for i in range(3)]})
    predictions = model.predict(rows, output_directory=None).predictions
    tokenizer = model._require_loaded().built.tokenizer
    prompts = [tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) for turns in rows["messages"]]
    expected = []
    for tokens in _greedy_without_bos(model._require_loaded().built.model, tokenizer, prompts):
        if tokenizer.eos_token_id in tokens:
            tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
        expected.append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
    assert predictions["reply_response"].tolist() == expected

    # evaluation: the output column when present, else the final assistant turn of each conversation
    with_column = pd.DataFrame({"messages": [conversation(i, False) for i in range(3)], "reply": ["00", "x", "22"]})
    evaluation = model.evaluate(with_column, output_directory=None)
    exact = sum(p == t for p, t in zip(evaluation.predictions["reply_response"], ["00", "x", "22"])) / 3
    assert evaluation.statistics["reply"]["exact_match"] == pytest.approx(exact)
    in_cell = model.evaluate(pd.DataFrame({"messages": [conversation(i, True) for i in range(3)]}), output_directory=None)
    assert in_cell.predictions["reply_response"].tolist() == expected  # the final assistant turn is left out of the prompt
    assert in_cell.statistics["reply"]["exact_match"] == pytest.approx(sum(p == f"{i}{i}" for i, p in enumerate(expected)) / 3)


def _greedy_without_bos(model, tokenizer, prompts):
    # chat templates write their own special tokens: the rendered text is tokenized without adding any
    import torch

    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            generated = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            outputs.append(generated[0, ids["input_ids"].shape[1]:].tolist())
    return outputs


def test_finetune_on_conversations_and_the_output_column(chat_config, tmp_path):
    rows = [{"messages": conversation(i, False), "reply": f"{i}{i}"} for i in range(10)]
    rows += [{"messages": conversation(i, True), "reply": None} for i in range(10)]
    result = LudwigLLM(chat_config(prompt={"chat_template": "chatml"})).experiment(
        dataset=pd.DataFrame(rows), output_directory=str(tmp_path))
    assert result.training_statistics["steps"]
    assert result.training_statistics["preprocessing"]["train"]["rows"] > 0
    assert set(result.test_statistics["reply"]) >= {"exact_match", "loss"}


def test_debug_view_shows_each_turn_with_role_tokens_and_loss(tiny_model_dir):
    from ludwig_llm.models.loader import load_tokenizer

    config = load_config({"base_model": tiny_model_dir, "input_features": [{"name": "messages", "type": "chat"}],
                          "output_features": [{"name": "reply", "type": "text"}]})
    text = debug_report(config, load_tokenizer(tiny_model_dir), pd.DataFrame({"messages": [conversation(7, True)]}), rows=1)
    lines = text.splitlines()
    assert "[user] no loss" in lines[1] and "'<|user|>\\nMy code is 77.</s>\\n'" in lines[1]
    assert any(line.startswith("[assistant] LOSS") and "'Noted.</s>'" in line for line in lines)
    assert any(line.startswith("[assistant] LOSS") and "'77</s>'" in line for line in lines)


def test_generation_stops_at_an_extra_stop_token(tiny_model_dir):
    from ludwig_llm.models.loader import load_tokenizer
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = tokenizer("Question: how many", add_special_tokens=True)["input_ids"]
    generation = GenerationConfig.from_dict({"max_new_tokens": 8})
    free = greedy_tokens(model, tokenizer, ["Question: how many"], 8)[0]
    stop = free[3]
    assert stop not in free[:3] and stop != tokenizer.eos_token_id
    stopped = generate(model, tokenizer, [prompt], generation, progress=False, stop_token_ids=[stop])[0]
    assert stopped == tokenizer.decode(free[:3], skip_special_tokens=True).strip()
