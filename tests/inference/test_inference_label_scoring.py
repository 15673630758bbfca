"""Label scoring: batched log-likelihoods equal a slow one-pair-at-a-time reference, and a trained preference shows."""

import numpy as np
import pytest
import torch

from ludwig_llm.errors import UserError
from ludwig_llm.inference.label_scoring import (
    label_log_likelihoods,
    label_token_ids,
    predict_labels,
    prompt_wants_space,
    score_labels,
)

LABELS = ["positive", "negative", "neutral sentiment", "no"]
PROMPTS = [
    "Review: great movie. Sentiment:",
    "Review: terrible.\nSentiment:\n",
    "The quick brown fox jumps over the lazy dog. Is it positive? Answer: ",
    "Hi",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = tiny_model_dir
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(directory)


def reference_log_likelihood(model, prompt_ids, label_ids):
    """One unpadded forward pass per (prompt, label) pair: sum of log p(label token | everything before)."""
    ids = torch.tensor([prompt_ids + label_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(logprobs[len(prompt_ids) + i - 1, token].item() for i, token in enumerate(label_ids))


def test_batched_scores_equal_slow_reference(tiny):
    model, tokenizer = tiny
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    variants = label_token_ids(tokenizer, LABELS)
    assert len({len(ids) for ids in variants[True]}) > 1  # labels of different token lengths
    expected = np.array(
        [[reference_log_likelihood(model, ids, label) for label in variants[prompt_wants_space(tokenizer, ids)]] for ids in prompt_ids]
    )
    for batch_size in (1, 5, 64):
        got = label_log_likelihoods(model, tokenizer, prompt_ids, LABELS, batch_size=batch_size, progress=False)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_shared_prompt_cache_equals_pair_by_pair(tiny):
    """Each prompt encoded once (and the batch's common prefix once), labels scored off its KV cache: same scores."""
    model, tokenizer = tiny
    instructions = "Classify the sentiment of the review below as positive, negative or neutral.\n"
    prompt_ids = [tokenizer(instructions + p)["input_ids"] for p in PROMPTS] + [tokenizer(p)["input_ids"] for p in PROMPTS]
    pairwise = label_log_likelihoods(model, tokenizer, prompt_ids, LABELS, batch_size=5, progress=False, shared_cache=False)
    for batch_size in (1, 4, 9, 64):  # one row per batch, whole batches of rows, rows with and without the shared prefix
        got = label_log_likelihoods(model, tokenizer, prompt_ids, LABELS, batch_size=batch_size, progress=False)
        np.testing.assert_allclose(got, pairwise, rtol=1e-5, atol=1e-4)
    one_token = ["a", "b"]  # no continuation pass at all
    np.testing.assert_allclose(
        label_log_likelihoods(model, tokenizer, prompt_ids, one_token, batch_size=8, progress=False),
        label_log_likelihoods(model, tokenizer, prompt_ids, one_token, batch_size=8, progress=False, shared_cache=False),
        rtol=1e-5, atol=1e-4)


def test_probabilities_sum_to_one_and_prediction_is_a_label(tiny):
    model, tokenizer = tiny
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    probs = score_labels(model, tokenizer, prompt_ids, LABELS, progress=False)
    assert probs.shape == (len(PROMPTS), len(LABELS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    assert (probs > 0).all()
    assert set(predict_labels(probs, LABELS)) <= set(LABELS)

    normalized = score_labels(model, tokenizer, prompt_ids, LABELS, progress=False, length_normalize=True)
    np.testing.assert_allclose(normalized.sum(axis=1), 1.0, rtol=1e-9)
    assert score_labels(model, tokenizer, [], LABELS, progress=False).shape == (0, len(LABELS))


def test_label_spacing_follows_the_prompt(tiny):
    _, tokenizer = tiny
    assert prompt_wants_space(tokenizer, tokenizer("Sentiment:")["input_ids"])
    assert not prompt_wants_space(tokenizer, tokenizer("Sentiment:\n")["input_ids"])
    assert not prompt_wants_space(tokenizer, tokenizer("Answer: ")["input_ids"])
    assert not prompt_wants_space(tokenizer, tokenizer("")["input_ids"])  # only <s>: a special token
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert not prompt_wants_space(tokenizer, tokenizer(chat, add_special_tokens=False)["input_ids"])

    variants = label_token_ids(tokenizer, ["positive"])
    assert tokenizer.decode(variants[True][0]) == " positive"
    assert tokenizer.decode(variants[False][0]) == "positive"


def test_trained_preference_is_predicted(tiny):
    """A few optimizer steps teach the model which label follows which review; scoring must pick it up."""
    from transformers import AutoModelForCausalLM

    _, tokenizer = tiny
    model = AutoModelForCausalLM.from_pretrained(tiny[0].name_or_path, dtype=torch.float32)
    labels = ["positive", "negative"]
    examples = [("Review: great movie. Sentiment:", "positive"), ("Review: terrible movie. Sentiment:", "negative")]
    prompt_ids = [tokenizer(p)["input_ids"] for p, _ in examples]
    before = score_labels(model, tokenizer, prompt_ids, labels, progress=False)

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):
        for (prompt, label), ids in zip(examples, prompt_ids):
            target = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
            input_ids = torch.tensor([ids + target])
            loss = model(input_ids, labels=torch.tensor([[-100] * len(ids) + target])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()

    after = score_labels(model, tokenizer, prompt_ids, labels, progress=False)
    assert predict_labels(after, labels) == ["positive", "negative"]
    assert after[0, 0] > 0.9 and after[1, 1] > 0.9
    assert not (before[0, 0] > 0.9 and before[1, 1] > 0.9)  # the preference came from training


def test_peft_wrapped_model(tiny):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    _, tokenizer = tiny
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny[0].name_or_path, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).eval()
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    variants = label_token_ids(tokenizer, LABELS)
    expected = np.array(
        [[reference_log_likelihood(model, ids, label) for label in variants[prompt_wants_space(tokenizer, ids)]] for ids in prompt_ids]
    )
    got = label_log_likelihoods(model, tokenizer, prompt_ids, LABELS, batch_size=6, progress=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_bad_inputs(tiny):
    model, tokenizer = tiny
    with pytest.raises(UserError):
        score_labels(model, tokenizer, [[1, 2]], [], progress=False)
    with pytest.raises(UserError):
        score_labels(model, tokenizer, [[1, 2]], ["ok", ""], progress=False)
    with pytest.raises(UserError):
        score_labels(model, tokenizer, [[]], ["ok"], progress=False)
