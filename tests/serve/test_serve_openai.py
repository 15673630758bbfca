"""The OpenAI-compatible endpoints of `serve` through the official `openai` client against a live server:
models, completions and chat completions, plain and streamed (the stream joins to the plain answer),
max_tokens, stop, greedy answers equal to plain transformers `generate`, and concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch

from tests.serve.conftest import MAX_NEW_TOKENS

QUESTIONS = ["Where did Hugo move?", "Tell me about Paris.", "2 + 2?", "Name a city.", "Summarize: Chen moved to Lima.",
             "Who lives in Oslo?", "Translate: good morning", "positive or negative?"]


@pytest.fixture(scope="module")
def client(live_server):
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def reference_chat(served_model, question, max_new_tokens=MAX_NEW_TOKENS):
    """Greedy `generate` of the loaded model with the tokenizer's chat template, decoded up to end of sequence."""
    model, tokenizer = served_model.predictor.loaded_model.model, served_model.predictor.loaded_model.tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id)
    tokens = output[0, ids["input_ids"].shape[1]:].tolist()
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[:tokens.index(tokenizer.eos_token_id)]
    return tokenizer.decode(tokens, skip_special_tokens=True)


def chat(client, model, question, **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], temperature=0, **kwargs)


def test_models_lists_the_served_model(client, served_model):
    assert [m.id for m in client.models.list().data] == [served_model.name]


def test_chat_plain_and_streamed_equal_transformers_generate(client, served_model):
    expected = reference_chat(served_model, QUESTIONS[0])
    assert expected.strip()
    plain = chat(client, served_model.name, QUESTIONS[0])
    assert plain.choices[0].message.content == expected
    assert plain.choices[0].message.role == "assistant"
    assert plain.usage.completion_tokens <= MAX_NEW_TOKENS and plain.usage.prompt_tokens > 0
    chunks = list(chat(client, served_model.name, QUESTIONS[0], stream=True))
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert "".join(pieces) == expected and sum(1 for p in pieces if p) > 1  # streamed in several pieces
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_completions_max_tokens_and_stop(client, served_model):
    long = client.completions.create(model=served_model.name, prompt="The capital of France", max_tokens=12, temperature=0)
    assert long.choices[0].finish_reason in ("length", "stop") and long.usage.completion_tokens <= 12
    short = client.completions.create(model=served_model.name, prompt="The capital of France", max_tokens=3, temperature=0)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    assert long.choices[0].text.startswith(short.choices[0].text)
    text = long.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    assert stop.strip(), text
    stopped = client.completions.create(model=served_model.name, prompt="The capital of France", max_tokens=12, temperature=0,
                                        stop=[stop])
    assert stopped.choices[0].text == text[:text.index(stop)] and stopped.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=served_model.name, prompt="The capital of France", max_tokens=12,
                                         temperature=0, stop=[stop], stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == stopped.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sampling_follows_the_seed(client, served_model):
    answers = [client.completions.create(model=served_model.name, prompt="Name a city", max_tokens=8, temperature=1.5,
                                         seed=seed).choices[0].text for seed in (1, 1, 2, 3, 4)]
    assert answers[0] == answers[1] and len(set(answers)) > 1


def test_concurrent_chat_requests_equal_their_answers_one_at_a_time(client, served_model):
    alone = [chat(client, served_model.name, q).choices[0].message.content for q in QUESTIONS]

    def ask(index):
        if index % 2:
            return "".join(c.choices[0].delta.content or "" for c in chat(client, served_model.name, QUESTIONS[index], stream=True))
        return chat(client, served_model.name, QUESTIONS[index]).choices[0].message.content

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(ask, range(len(QUESTIONS))))
    assert together == alone


def test_client_errors_are_raised_as_the_openai_client_expects(client, served_model):
    with pytest.raises(openai.NotFoundError, match="not served here"):
        chat(client, "some-other-model", "hi")
    with pytest.raises(openai.BadRequestError, match="temperature must be 0 or more"):
        client.completions.create(model=served_model.name, prompt="hi", temperature=-1)
    assert chat(client, served_model.name, "hi").choices[0].message.content is not None  # still serving
