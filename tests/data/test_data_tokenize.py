"""Tokenization: loss mask over exactly the prompt, EOS, special tokens, truncation, padding, length grouping."""

import pytest
import torch
from tokenizers import processors

from ludwig_llm.data.tokenize import (
    IGNORE_INDEX,
    PaddingCollator,
    encode_for_training,
    encode_prompts,
    length_grouped_sampler,
    pad_token_id_of,
)
from ludwig_llm.schema import load_config
from tests.tiny_models import CHAT_TEMPLATE, build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def config(prompt_max=512, target_max=256, global_max=None, train_on_inputs=False, chat=False):
    return load_config({
        "base_model": "tiny",
        "input_features": [{"name": "q", "type": "text", "preprocessing": {"max_sequence_length": prompt_max}}],
        "output_features": [{"name": "a", "type": "text", "preprocessing": {"max_sequence_length": target_max}}],
        "preprocessing": {"global_max_sequence_length": global_max, "train_on_inputs": train_on_inputs},
        "prompt": {"apply_chat_template": chat},
    })


def plain(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_labels_mask_exactly_the_prompt_and_eos_is_appended(tokenizer):
    prompt, target = "Question: what is the capital of France? Answer:", " Paris"
    rows = encode_for_training([prompt], [target], tokenizer, config())
    example = rows[0]
    expected_prompt = [tokenizer.bos_token_id] + plain(tokenizer, prompt)
    expected_target = plain(tokenizer, target) + [tokenizer.eos_token_id]
    assert example["input_ids"] == expected_prompt + expected_target
    assert example["labels"] == [IGNORE_INDEX] * len(expected_prompt) + expected_target
    assert rows.stats.rows == 1 and rows.stats.truncated_prompt_rows == 0 and rows.stats.truncated_target_rows == 0


def test_train_on_inputs_keeps_prompt_labels(tokenizer):
    example = encode_for_training(["Question:"], [" yes"], tokenizer, config(train_on_inputs=True))[0]
    assert example["labels"] == example["input_ids"]


def test_prompt_ids_match_between_training_and_generation(tokenizer):
    prompts = ["The quick brown fox", "What is the capital of France?"]
    rows = encode_for_training(prompts, ["a", "b"], tokenizer, config())
    for example, ids in zip(rows, encode_prompts(prompts, tokenizer, config())):
        prompt_length = sum(label == IGNORE_INDEX for label in example["labels"])
        assert example["input_ids"][:prompt_length] == ids


def test_no_second_bos_when_the_text_already_has_one(tokenizer):
    ids = encode_prompts(["<s>Hello"], tokenizer, config())[0]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id


def test_tokenizer_that_appends_eos_does_not_end_the_prompt():
    tokenizer = build_tiny_tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tokenizer.bos_token_id), ("</s>", tokenizer.eos_token_id)]
    )
    ids = encode_prompts(["Hello"], tokenizer, config())[0]
    assert ids == [tokenizer.bos_token_id] + plain(tokenizer, "Hello")


def test_chat_template_text_gets_no_added_special_tokens(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert encode_prompts([text], tokenizer, config(chat=True))[0] == plain(tokenizer, text)
    # a chat template that writes its own BOS gets exactly one
    with_bos = build_tiny_tokenizer()
    with_bos.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE
    text = with_bos.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    ids = encode_prompts([text], with_bos, config(chat=True))[0]
    assert ids.count(with_bos.bos_token_id) == 1 and ids[0] == with_bos.bos_token_id


def test_prompt_truncation_keeps_bos_and_the_end(tokenizer):
    prompt = "1 2 3 4 5 6 7 8 9 10 100 1000 The quick brown fox jumps over the lazy dog."
    body = plain(tokenizer, prompt)
    rows = encode_for_training([prompt, "hi"], ["x", "y"], tokenizer, config(prompt_max=6))
    example = rows[0]
    prompt_ids = example["input_ids"][:6]
    assert prompt_ids == [tokenizer.bos_token_id] + body[-5:]
    assert example["labels"][:6] == [IGNORE_INDEX] * 6
    assert rows.stats.truncated_prompt_rows == 1
    assert rows.stats.truncated_target_rows == 0
    assert encode_prompts([prompt], tokenizer, config(prompt_max=6)) == [prompt_ids]
    ids, truncated = encode_prompts([prompt, "hi"], tokenizer, config(prompt_max=6), return_truncated=True)
    assert truncated == 1


def test_target_truncation_keeps_the_start_and_eos(tokenizer):
    target = " The quick brown fox jumps over the lazy dog."
    rows = encode_for_training(["Q:", "Q:"], [target, " ok"], tokenizer, config(target_max=3))
    labels = [label for label in rows[0]["labels"] if label != IGNORE_INDEX]
    assert labels == plain(tokenizer, target)[:3] + [tokenizer.eos_token_id]
    assert rows.stats.truncated_target_rows == 1
    assert rows.stats.truncated_prompt_rows == 0


def test_global_limit_bounds_the_total(tokenizer):
    prompt = "The quick brown fox jumps over the lazy dog. " * 3
    target = " What is the capital of France? The capital of France is Paris."
    rows = encode_for_training([prompt, "Hi"], [target, " yes"], tokenizer, config(global_max=20))
    long_row, short_row = rows[0], rows[1]
    assert len(long_row["input_ids"]) == 20
    assert long_row["input_ids"][0] == tokenizer.bos_token_id
    assert long_row["input_ids"][-1] == tokenizer.eos_token_id
    # prompt kept its end, target its start, each about half the budget
    prompt_length = sum(label == IGNORE_INDEX for label in long_row["labels"])
    assert prompt_length == 10
    assert long_row["input_ids"][1:prompt_length] == plain(tokenizer, prompt)[-(prompt_length - 1):]
    assert long_row["input_ids"][prompt_length:-1] == plain(tokenizer, target)[: 20 - prompt_length - 1]
    assert rows.stats.truncated_prompt_rows == 1 and rows.stats.truncated_target_rows == 1
    assert len(short_row["input_ids"]) < 20
    # a short target is kept whole; only the prompt is cut
    rows = encode_for_training([prompt], [" yes"], tokenizer, config(global_max=20))
    assert rows.stats.truncated_target_rows == 0 and rows.stats.truncated_prompt_rows == 1
    assert [label for label in rows[0]["labels"] if label != IGNORE_INDEX] == plain(tokenizer, " yes") + [tokenizer.eos_token_id]
    assert len(rows[0]["input_ids"]) == 20


def test_empty_target_still_teaches_eos(tokenizer):
    rows = encode_for_training(["Q:"], [""], tokenizer, config())
    assert [label for label in rows[0]["labels"] if label != IGNORE_INDEX] == [tokenizer.eos_token_id]
    assert rows.stats.dropped_rows == 0


def test_collator_pads_right_for_training_and_left_for_generation():
    examples = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    batch = PaddingCollator(pad_token_id=0)(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["input_ids"].dtype == torch.long

    left = PaddingCollator(pad_token_id=0, padding_side="left", pad_to_multiple_of=4)([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert left["input_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert left["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert "labels" not in left


def test_pad_token_falls_back_to_eos(tokenizer):
    assert pad_token_id_of(tokenizer) == tokenizer.pad_token_id
    no_pad = build_tiny_tokenizer()
    no_pad.pad_token = None
    assert pad_token_id_of(no_pad) == no_pad.eos_token_id


def test_length_grouped_sampler_groups_lengths_and_is_seeded():
    lengths = [(i * 37) % 200 + 1 for i in range(400)]
    batch_size = 8
    order = list(length_grouped_sampler(lengths, batch_size, seed=3))
    assert sorted(order) == list(range(400))
    assert order == list(length_grouped_sampler(lengths, batch_size, seed=3))
    assert order != list(length_grouped_sampler(lengths, batch_size, seed=4))
    # the longest row comes first, so running out of memory shows at once
    assert lengths[order[0]] == max(lengths)

    def mean_spread(indices):
        batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        return sum(max(lengths[j] for j in b) - min(lengths[j] for j in b) for b in batches) / len(batches)

    unsorted = list(torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist())
    assert mean_spread(order) < mean_spread(unsorted) / 4

    sampler = length_grouped_sampler(lengths, batch_size, seed=3)
    sampler.set_epoch(1)
    assert list(sampler) != order  # a new order each epoch


def test_length_grouped_sampler_shards_across_replicas():
    lengths = list(range(1, 101))
    shards = [list(length_grouped_sampler(lengths, 4, seed=0, num_replicas=2, rank=rank)) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50
    assert sorted(shards[0] + shards[1]) == list(range(100))
