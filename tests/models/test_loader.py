import json
import os
import shutil

import pytest
import torch

from ludwig_llm.errors import ConfigValidationError, UserError
from ludwig_llm.models.loader import (
    build_bnb_config,
    check_remote_code,
    is_quantized,
    load_base_model,
    load_tokenizer,
    prepare_for_kbit_training,
)
from ludwig_llm.schema import load_config
from tests.conftest import tiny_config

INPUT_IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46]])


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dir):
    return tiny_model_dir  # the session's one tiny model (tests/conftest.py)


def _copy_with_config_changes(source, destination, **changes):
    shutil.copytree(source, destination)
    config_file = os.path.join(destination, "config.json")
    config = json.load(open(config_file))
    config.update(changes)
    json.dump(config, open(config_file, "w"))
    return str(destination)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_padding_side_and_pad_token(tiny_llama):
    for side in ("left", "right"):
        tokenizer = load_tokenizer(tiny_llama, padding_side=side)
        assert tokenizer.padding_side == side
        batch = tokenizer(["hi", "a longer sentence here"], padding=True)
        assert len(set(map(len, batch.input_ids))) == 1
    assert tokenizer.pad_token == "<pad>"


def test_tokenizer_without_pad_token_pads_with_eos(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None

    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == loaded.eos_token == "</s>"


def test_bad_padding_side_is_rejected(tiny_llama):
    with pytest.raises(ValueError, match="padding_side"):
        load_tokenizer(tiny_llama, padding_side="middle")


# ---------------------------------------------------------------- remote code


@pytest.fixture
def remote_code_model(tiny_llama, tmp_path):
    return _copy_with_config_changes(
        tiny_llama, tmp_path / "remote", auto_map={"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    )


def test_remote_code_is_refused_without_opt_in(remote_code_model):
    with pytest.raises(UserError, match=r"model_parameters\.trust_remote_code: true") as error:
        check_remote_code(remote_code_model, trust_remote_code=False)
    assert remote_code_model in str(error.value)
    with pytest.raises(UserError, match="trust_remote_code"):
        load_base_model(remote_code_model)
    with pytest.raises(UserError, match="trust_remote_code"):
        load_tokenizer(remote_code_model)


def test_remote_code_check_passes_with_opt_in(remote_code_model, tiny_llama):
    check_remote_code(remote_code_model, trust_remote_code=True)
    check_remote_code(tiny_llama, trust_remote_code=False)


def test_tokenizer_remote_code_is_refused(tiny_llama, tmp_path):
    directory = shutil.copytree(tiny_llama, tmp_path / "remote_tokenizer")
    tokenizer_config_file = directory / "tokenizer_config.json"
    tokenizer_config = json.load(open(tokenizer_config_file))
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["tok.EvilTokenizer", None]}
    json.dump(tokenizer_config, open(tokenizer_config_file, "w"))
    with pytest.raises(UserError, match="trust_remote_code"):
        load_tokenizer(str(directory))


# ---------------------------------------------------------------- full precision
# (dtype names, quantization options and RoPE types are the schema's to check: tests/schema)


def test_loads_full_precision_model_with_dtype(tiny_llama):
    model = load_base_model(tiny_llama, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert not is_quantized(model)
    with torch.no_grad():
        assert model(INPUT_IDS).logits.shape == (1, INPUT_IDS.shape[1], model.config.vocab_size)


def test_non_causal_model_is_rejected(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="not a causal .* model type is .vit."):
        load_base_model(str(tmp_path))


# ---------------------------------------------------------------- quantization


@pytest.mark.parametrize(
    "quantization, layer_class",
    [
        (
            {"bits": 4, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
             "bnb_4bit_compute_dtype": "float32"},
            "Linear4bit",
        ),
        ({"bits": 8, "llm_int8_threshold": 6.0}, "Linear8bitLt"),
    ],
)
def test_quantized_loading_on_cpu(tiny_llama, quantization, layer_class):
    full = load_base_model(tiny_llama, dtype="float32")
    quantized = load_base_model(tiny_llama, quantization=quantization, dtype="float32")

    assert is_quantized(quantized)
    assert type(quantized.model.layers[0].self_attn.q_proj).__name__ == layer_class
    with torch.no_grad():
        expected = full(INPUT_IDS).logits
        got = quantized(INPUT_IDS).logits
    assert torch.isfinite(got).all()
    # Quantization error only: the outputs stay strongly correlated.
    correlation = torch.corrcoef(torch.stack([expected.flatten(), got.flatten()]))[0, 1]
    assert correlation > 0.9


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("gradient_checkpointing", [True, False])
def test_kbit_training_prep_lets_adapters_train(tiny_llama, bits, gradient_checkpointing):
    from ludwig_llm.models.adapters import apply_adapter

    model = load_base_model(tiny_llama, quantization={"bits": bits}, dtype="float32")
    model = prepare_for_kbit_training(model, gradient_checkpointing=gradient_checkpointing)
    assert model.is_activation_checkpointing == gradient_checkpointing
    peft_model = apply_adapter(model, "lora", {"r": 4, "alpha": 8})
    peft_model.train()
    loss = peft_model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss
    loss.backward()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert any(p.grad.abs().sum() > 0 for p in trainable)


def test_kbit_prep_of_full_precision_model_only_enables_checkpointing(tiny_llama):
    model = load_base_model(tiny_llama, dtype="float32")
    prepared = prepare_for_kbit_training(model, gradient_checkpointing=True)
    assert prepared.is_activation_checkpointing
    assert all(p.requires_grad for p in prepared.parameters())


def test_bnb_config_maps_every_key():
    config = build_bnb_config(
        {"bits": 8, "llm_int8_threshold": 5.0, "llm_int8_has_fp16_weight": True, "llm_int8_skip_modules": ["lm_head"]}
    )
    assert config.load_in_8bit and not config.load_in_4bit
    assert (config.llm_int8_threshold, config.llm_int8_has_fp16_weight) == (5.0, True)
    assert config.llm_int8_skip_modules == ["lm_head"]
    config = build_bnb_config({"bits": 4, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16"})
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16


# ---------------------------------------------------------------- rope scaling


def _inv_freq(model):
    return model.model.rotary_emb.inv_freq


def test_linear_rope_scaling_takes_effect(tiny_llama):
    plain = load_base_model(tiny_llama)
    scaled = load_base_model(tiny_llama, rope_scaling={"rope_type": "linear", "factor": 2.0})

    assert scaled.config.rope_parameters["rope_type"] == "linear"
    assert scaled.config.rope_parameters["factor"] == 2.0
    assert scaled.config.rope_parameters["rope_theta"] == plain.config.rope_parameters["rope_theta"]
    torch.testing.assert_close(_inv_freq(scaled), _inv_freq(plain) / 2.0)
    with torch.no_grad():
        assert not torch.allclose(scaled(INPUT_IDS).logits, plain(INPUT_IDS).logits)


def test_rope_scaling_with_quantization(tiny_llama):
    model = load_base_model(tiny_llama, quantization={"bits": 4}, rope_scaling={"rope_type": "linear", "factor": 3.0})
    assert model.config.rope_parameters["factor"] == 3.0


@pytest.mark.parametrize("sections, path", [
    (dict(quantization={"bits": 3}), "quantization.bits"),
    (dict(quantization={"bits": 4, "nonsense": 1}), "quantization.nonsense"),
    (dict(quantization={"bits": 4, "bnb_4bit_compute_dtype": "float99"}), "quantization.bnb_4bit_compute_dtype"),
    (dict(trainer={"precision": "fp64"}), "trainer.precision"),
    (dict(model_parameters={"rope_scaling": {"type": "stretchy", "factor": 2.0}}), "model_parameters.rope_scaling.type"),
])
def test_what_the_loader_no_longer_checks_the_schema_refuses(tiny_llama, sections, path):
    with pytest.raises(ConfigValidationError, match=path.replace(".", r"\.")):
        load_config(tiny_config(tiny_llama, **sections))
