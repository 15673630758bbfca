"""oneDNN-packed linears under greedy generation: the same logits, every layer given back."""

import pytest
import torch

from ludwig_llm.inference.packed_linear import onednn_available, packed_linears


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear operators")
def test_packed_linears_keep_the_logits_and_give_every_layer_back(tiny):
    ids = torch.tensor([[1, 5, 9, 20, 33], [1, 7, 7, 40, 2]])
    linears = [m for m in tiny.modules() if type(m) is torch.nn.Linear]
    with torch.inference_mode():
        plain = tiny(input_ids=ids).logits
        with packed_linears(tiny) as patched:
            assert patched == len(linears) > 0
            with packed_linears(tiny) as nested:
                assert nested == 0  # already packed: the inner block leaves them alone
            packed = tiny(input_ids=ids).logits
    assert torch.allclose(packed, plain, atol=1e-5, rtol=1e-4)
    assert not any("forward" in vars(m) for m in linears)  # every layer has its own forward again


def test_packed_linears_leave_non_fp32_weights_alone(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    with packed_linears(model) as patched:
        assert patched == 0


def test_packed_linears_restore_forward_when_the_block_fails(tiny):
    with pytest.raises(RuntimeError, match="boom"):
        with packed_linears(tiny):
            raise RuntimeError("boom")
    assert not any("forward" in vars(m) for m in tiny.modules())


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear operators")
def test_generate_with_packed_linears_matches_one_row_generate(tiny_model_dir, monkeypatch):
    """Mixed prompt lengths, rows ending early (a stop token), a LoRA adapter: the packed path still gives
    exactly what one-row `model.generate` gives."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import ludwig_llm.inference.generation as generation
    from ludwig_llm.schema.generation import GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    torch.manual_seed(0)
    adapted = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    ).eval()
    prompts = ["Hi", "The quick brown fox jumps over the lazy", "1 2 3", "def add(a, b):",
               "Question: how many legs does a spider have? Answer:", "What is the capital of France?"]
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    patched = []

    def spy(model):
        context = packed_linears(model)

        class Recording:
            def __enter__(self):
                patched.append(context.__enter__())

            def __exit__(self, *exc):
                return context.__exit__(*exc)

        return Recording()

    monkeypatch.setattr(generation, "packed_linears", spy)
    for model in (base, adapted):
        with torch.no_grad():
            first = model.generate(torch.tensor([prompt_ids[1]]), max_new_tokens=4, do_sample=False)
        first = first[0, len(prompt_ids[1]):]
        stop = int(first[1])  # a token the model emits: that row (at least) ends after one token
        expected = []
        with torch.no_grad():
            for ids in prompt_ids:
                new = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                                     eos_token_id=[tokenizer.eos_token_id, stop])[0, len(ids):].tolist()
                new = new[:new.index(stop)] if stop in new else new
                expected.append(tokenizer.decode(new, skip_special_tokens=True).strip())
        assert len({len(text) for text in expected}) > 1
        got = generation.generate(model, tokenizer, prompt_ids, GenerationConfig(max_new_tokens=16), batch_size=3,
                                  progress=False, stop_token_ids=[stop])
        assert patched and patched[-1] > 0  # the packed path really ran
        assert got == expected
