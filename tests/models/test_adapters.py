import dataclasses
import json
import os

import peft
import pytest
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
import torch

from ludwig_llm.errors import UserError
from ludwig_llm.models.adapters import apply_adapter, build_peft_config, merge_and_save
from ludwig_llm.models.loader import load_base_model, prepare_for_kbit_training
from ludwig_llm.schema.registry import adapter_registry, load_implementation

INPUT_IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46]])

# Small settings per type; AdaLoRA cannot be built without its training length.
ADAPTER_PARAMS = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "adalora": {"init_r": 6, "target_r": 4, "total_step": 10, "alpha": 8},
    "ia3": {},
    "prefix_tuning": {"num_virtual_tokens": 4},
    "prompt_tuning": {"num_virtual_tokens": 4},
    "p_tuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 16, "encoder_dropout": 0.1},
    "loha": {"r": 4, "alpha": 8, "module_dropout": 0.1},
    "lokr": {"r": 4, "alpha": 8, "module_dropout": 0.1},
    "vera": {"r": 8, "vera_dropout": 0.1},
    # The tiny model's layers are 64 and 128 wide: block and vector sizes must divide them.
    "oft": {"oft_block_size": 16, "module_dropout": 0.1},
    "boft": {"boft_block_size": 8, "boft_dropout": 0.1},
    "hra": {"r": 4},
    "ln_tuning": {},
    "vblora": {"r": 2, "num_vectors": 16, "vector_length": 16, "topk": 2},
    "fourierft": {"n_frequency": 32, "scaling": 100.0},
    "c3a": {"block_size": 16},
    "tinylora": {"r": 2, "u": 8},
}
# Adapters that add virtual tokens instead of changing weights: nothing to merge.
PROMPT_LEARNING_TYPES = {name for name, schema in adapter_registry.items()
                         if issubclass(load_implementation(schema), peft.PromptLearningConfig)}
MERGEABLE_TYPES = sorted(set(adapter_registry.names()) - PROMPT_LEARNING_TYPES)


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dir):
    return tiny_model_dir  # the session's one tiny model (tests/conftest.py)


def _randomize_adapter_weights(peft_model, seed=0):
    """Fresh adapters are initialised to be a no-op; perturb them so tests can tell them apart from the base."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=INPUT_IDS).logits


def test_every_type_is_covered():
    assert set(ADAPTER_PARAMS) == set(adapter_registry.names())
    assert PROMPT_LEARNING_TYPES == {"prefix_tuning", "prompt_tuning", "p_tuning"}


@pytest.mark.parametrize("adapter_type", sorted(adapter_registry.names()))
def test_each_adapter_schema_names_its_peft_config_and_real_fields(adapter_type):
    """The schema class is the one registration: its peft config class resolves, is that adapter type, and every
    field of ours (renamed where the class says so) is a field of that peft config."""
    schema = adapter_registry.get(adapter_type)
    config_class = load_implementation(schema)
    # Our type names are peft's PeftType values lower-cased: that is how a saved adapter is matched back.
    assert PEFT_TYPE_TO_CONFIG_MAPPING[peft.PeftType(adapter_type.upper())] is config_class
    peft_fields = {field.name for field in dataclasses.fields(config_class)}
    ours = set(schema().peft_params())
    assert {schema.peft_field_names.get(name, name) for name in ours} <= peft_fields
    assert set(schema.peft_field_names) <= ours, "a rename that no config can reach"


@pytest.mark.parametrize("adapter_type", sorted(ADAPTER_PARAMS))
def test_every_adapter_type_attaches_and_trains(tiny_llama, adapter_type):
    model = load_base_model(tiny_llama, dtype="float32")
    peft_model = apply_adapter(model, adapter_type, ADAPTER_PARAMS[adapter_type])

    trainable = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable
    assert sum(p.numel() for p in trainable.values()) < sum(p.numel() for p in peft_model.parameters())
    peft_model.train()
    loss = peft_model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_short_names_are_renamed_to_peft_fields():
    lora = build_peft_config("LoRA", {"r": 4, "alpha": 32, "dropout": 0.2, "target_modules": ["q_proj"]})
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 32, 0.2)
    assert set(lora.target_modules) == {"q_proj"}
    assert lora.task_type == "CAUSAL_LM"
    assert build_peft_config("adalora", {"alpha": 3, "dropout": 0.3, "total_step": 10}).lora_dropout == 0.3
    # Types whose fields carry peft's own names pass them through.
    assert build_peft_config("loha", {"alpha": 3, "module_dropout": 0.3}).module_dropout == 0.3
    assert build_peft_config("vera", {"vera_dropout": 0.3}).vera_dropout == 0.3
    # peft's own names work too.
    assert build_peft_config("lora", {"lora_alpha": 7}).lora_alpha == 7


@pytest.mark.parametrize(
    "adapter_type, params, message",
    [
        ("lora", {"rank": 4}, "rank"),
        ("lora", {"alpha": 4, "lora_alpha": 8}, "same thing"),
        ("ia3", {"dropout": 0.1}, "dropout"),
        ("lora", {"task_type": "SEQ_CLS"}, "task_type"),
        ("adalora", {}, "total_step"),
        ("bitfit", {}, "Unknown adapter type"),
    ],
)
def test_bad_adapter_settings_are_user_errors(adapter_type, params, message):
    with pytest.raises(UserError, match=message):
        build_peft_config(adapter_type, params)


@pytest.mark.parametrize("adapter_type", ["lora", "ia3", "prompt_tuning"])
def test_pretrained_adapter_reload(tiny_llama, tmp_path, adapter_type):
    peft_model = apply_adapter(load_base_model(tiny_llama), adapter_type, ADAPTER_PARAMS[adapter_type])
    _randomize_adapter_weights(peft_model)
    expected = _logits(peft_model)
    peft_model.save_pretrained(tmp_path)

    for is_trainable in (True, False):
        reloaded = apply_adapter(
            load_base_model(tiny_llama), adapter_type, None, pretrained_adapter_weights=str(tmp_path),
            is_trainable=is_trainable,
        )
        assert any(p.requires_grad for p in reloaded.parameters()) == is_trainable
        torch.testing.assert_close(_logits(reloaded), expected)


def test_pretrained_adapter_type_mismatch_and_missing_dir(tiny_llama, tmp_path):
    peft_model = apply_adapter(load_base_model(tiny_llama), "lora", {"r": 2})
    peft_model.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="'lora'.*'ia3'"):
        apply_adapter(load_base_model(tiny_llama), "ia3", None, pretrained_adapter_weights=str(tmp_path))
    with pytest.raises(UserError, match="no adapter_config.json"):
        apply_adapter(load_base_model(tiny_llama), "lora", None, pretrained_adapter_weights=str(tmp_path / "nope"))


@pytest.mark.parametrize("adapter_type", MERGEABLE_TYPES)
def test_merge_and_save_matches_adapter_outputs(tiny_llama, tmp_path, adapter_type):
    from transformers import AutoModelForCausalLM

    peft_model = apply_adapter(load_base_model(tiny_llama, dtype="float32"), adapter_type, ADAPTER_PARAMS[adapter_type])
    _randomize_adapter_weights(peft_model)
    expected = _logits(peft_model)
    assert not torch.allclose(expected, _logits(load_base_model(tiny_llama, dtype="float32")))

    out_dir = merge_and_save(peft_model, str(tmp_path / "merged"))
    assert "model.safetensors" in os.listdir(out_dir)
    assert not os.path.exists(os.path.join(out_dir, "adapter_config.json"))
    merged = AutoModelForCausalLM.from_pretrained(out_dir)
    torch.testing.assert_close(_logits(merged), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bits", [4, 8])
def test_merge_of_quantized_base_uses_full_precision_weights(tiny_llama, tmp_path, bits):
    from transformers import AutoModelForCausalLM

    rope_scaling = {"rope_type": "linear", "factor": 2.0}
    quantized = load_base_model(tiny_llama, quantization={"bits": bits}, rope_scaling=rope_scaling, dtype="float32")
    peft_model = apply_adapter(prepare_for_kbit_training(quantized, True), "lora", {"r": 4, "alpha": 8})
    _randomize_adapter_weights(peft_model)
    quantized_logits = _logits(peft_model)
    adapter_dir = str(tmp_path / "adapter")
    peft_model.save_pretrained(adapter_dir)

    out_dir = merge_and_save(peft_model, str(tmp_path / "merged"), quantized=True)
    config = json.load(open(os.path.join(out_dir, "config.json")))
    assert "quantization_config" not in config
    assert config["rope_parameters"]["factor"] == 2.0
    assert config["use_cache"] is True

    # Exactly what the adapter does on the unquantized float32 base...
    full_base = load_base_model(tiny_llama, rope_scaling=rope_scaling, dtype="float32")
    expected = _logits(apply_adapter(full_base, "lora", None, pretrained_adapter_weights=adapter_dir))
    merged = AutoModelForCausalLM.from_pretrained(out_dir)
    assert merged.dtype == torch.float32
    torch.testing.assert_close(_logits(merged), expected, rtol=1e-4, atol=1e-4)
    # ...which is close to what it did on the quantized base.
    correlation = torch.corrcoef(torch.stack([_logits(merged).flatten(), quantized_logits.flatten()]))[0, 1]
    assert correlation > 0.9


@pytest.mark.parametrize("adapter_type", sorted(PROMPT_LEARNING_TYPES))
def test_prompt_learning_adapters_cannot_be_merged(tiny_llama, tmp_path, adapter_type):
    peft_model = apply_adapter(load_base_model(tiny_llama), adapter_type, ADAPTER_PARAMS[adapter_type])
    with pytest.raises(UserError, match="cannot be merged"):
        merge_and_save(peft_model, str(tmp_path))


NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="peft's LoftQ quantizes on CUDA")


@pytest.mark.parametrize("init", ["gaussian", "pissa", "pissa_niter_2", "olora", "orthogonal",
                                  pytest.param("loftq", marks=NEEDS_CUDA)])
def test_lora_initializations_by_name_attach_and_train(tiny_llama, init):
    """Ludwig's `init_lora_weights` strings reach peft through the schema class and give a trainable adapter."""
    from ludwig_llm.schema.adapters import LoraConfig

    params = LoraConfig.from_dict({"r": 4, "alpha": 8, "dropout": 0.0, "init_lora_weights": init}).peft_params()
    peft_model = apply_adapter(load_base_model(tiny_llama, dtype="float32"), "lora", params)
    assert peft_model.peft_config["default"].init_lora_weights == init
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    peft_model.train()
    peft_model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_2", "olora"])
def test_inits_that_change_the_base_save_an_adapter_for_the_unchanged_base(tiny_llama, tmp_path, init):
    """PiSSA and OLoRA leave a residual in the base weights: the adapter is saved converted to a plain LoRA (rank 2r,
    `init_lora_weights: true`) that gives the trained model's outputs on the original base model, with no decomposition
    to redo when it loads (randomized for `pissa_niter_N`, and not redone at all by tools that load plain LoRA)."""
    from ludwig_llm.models.initial_adapter import initial_adapter_path
    from ludwig_llm.schema.adapters import LoraConfig

    params = LoraConfig.from_dict({"r": 4, "alpha": 8, "dropout": 0.0, "init_lora_weights": init}).peft_params()
    model = apply_adapter(load_base_model(tiny_llama, dtype="float32"), "lora", params)
    with torch.no_grad():  # stand-in for training
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.add_(0.02)
        trained = model(input_ids=INPUT_IDS).logits
    assert initial_adapter_path(model)
    model.save_pretrained(str(tmp_path / "converted"), path_initial_model_for_weight_conversion=initial_adapter_path(model))
    saved = json.load(open(tmp_path / "converted" / "adapter_config.json"))
    assert saved["r"] == 8 and saved["init_lora_weights"] is True
    with torch.no_grad():
        converted = peft.PeftModel.from_pretrained(load_base_model(tiny_llama, dtype="float32"), str(tmp_path / "converted"))
        torch.testing.assert_close(converted(input_ids=INPUT_IDS).logits, trained, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_loftq_without_a_gpu_is_a_clear_user_error():
    with pytest.raises(UserError, match="'loftq' runs on a GPU"):
        build_peft_config("lora", {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4, "loftq_iter": 1}})


@pytest.mark.parametrize("adapter_type", ["lora", "adalora", "loha", "lokr"])
def test_lora_family_default_adapts_every_linear_layer_but_the_lm_head(tiny_llama, adapter_type):
    params = adapter_registry.get(adapter_type).from_dict({"type": adapter_type, "total_step": 10}
                                                          if adapter_type == "adalora" else {}).peft_params()
    assert params["target_modules"] == "all-linear"
    peft_model = apply_adapter(load_base_model(tiny_llama, dtype="float32"), adapter_type, params)
    adapted = {name.rsplit(".", 1)[-1] for name, module in peft_model.named_modules()
               if hasattr(module, "base_layer") and not hasattr(module.base_layer, "base_layer")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
