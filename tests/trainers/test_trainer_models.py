"""What the finetune trainer trains: every adapter type, QLoRA (4-bit) and 8-bit bases, full fine-tuning,
RoPE scaling and NEFTune, on the tiny model through the API; plus the gradient check of the 4-bit path."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from ludwig_llm.api import LudwigLLM
from ludwig_llm.models.build import build_llm
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.schema import load_config
from ludwig_llm.schema.registry import adapter_registry

# Small settings per adapter type (AdaLoRA's total_step comes from the trainer's total steps).
ADAPTERS = {
    "lora": {"r": 4, "alpha": 8},
    "adalora": {"init_r": 6, "target_r": 4},
    "ia3": {},
    "prefix_tuning": {"num_virtual_tokens": 4},
    "prompt_tuning": {"num_virtual_tokens": 4},
    "p_tuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 16},
    "loha": {"r": 4, "alpha": 8},
    "lokr": {"r": 4, "alpha": 8},
    "vera": {"r": 16},
    # The tiny model's layers are 64 and 128 wide: block and vector sizes must divide them.
    "oft": {"oft_block_size": 16},
    "boft": {"boft_block_size": 8},
    "hra": {"r": 4},
    "ln_tuning": {},
    "vblora": {"r": 2, "num_vectors": 16, "vector_length": 16},
    "fourierft": {"n_frequency": 32},
    "c3a": {"block_size": 16},
    "tinylora": {"r": 2, "u": 8},
}


def losses(statistics) -> list:
    return [s["loss"] for s in statistics["steps"]]


def test_every_adapter_type_is_parametrized():
    assert set(ADAPTERS) == set(adapter_registry.names())


@pytest.mark.parametrize("adapter_type", sorted(ADAPTERS))
def test_every_adapter_type_trains_saves_and_predicts(adapter_type, make_config, small_dataset, tmp_path):
    config = make_config(adapter={"_replace": True, "type": adapter_type, **ADAPTERS[adapter_type]},
                         trainer={"max_steps": 2, "batch_size": 4, "learning_rate": 0.01},
                         generation={"max_new_tokens": 2})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    assert result.training_statistics["total_steps"] == 2
    assert all(torch.isfinite(torch.tensor(losses(result.training_statistics))))
    model_dir = os.path.join(result.run_directory, MODEL_DIR)
    adapter_config = json.load(open(os.path.join(model_dir, "adapter_config.json")))
    assert adapter_config["peft_type"].lower() == adapter_type
    if adapter_type == "adalora":  # the run's steps reach peft where the adapter is built; the config keeps null
        assert adapter_config["total_step"] == 2
        assert load_config(os.path.join(model_dir, "ludwig_llm_config.yaml")).adapter.total_step is None
    weights = load_file(os.path.join(model_dir, "adapter_model.safetensors"))
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    predictions = LudwigLLM.load(model_dir).predict(small_dataset.head(2), output_directory=None).predictions
    assert len(predictions) == 2


def _train_loss_drop(config, dataset, tmp_path) -> tuple:
    result = LudwigLLM(config).train(dataset=dataset, output_directory=str(tmp_path))
    steps = losses(result.training_statistics)
    return steps[0], min(steps[-2:]), result


@pytest.mark.parametrize("quantization", [None, {"bits": 4}], ids=["lora", "qlora_4bit"])
def test_lora_and_qlora_lower_the_training_loss(quantization, make_config, small_dataset, tmp_path):
    config = make_config(quantization=quantization, trainer={"max_steps": 12, "batch_size": 8, "learning_rate": 0.01})
    first, last, result = _train_loss_drop(config, small_dataset, tmp_path)
    assert last < first - 0.3, losses(result.training_statistics)
    if quantization:
        saved = load_config(os.path.join(result.run_directory, MODEL_DIR, "ludwig_llm_config.yaml"))
        assert saved.quantization.bits == 4
        LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR)).predict(small_dataset.head(2), output_directory=None)


def _batch(tokenizer, texts):
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    labels = encoded["input_ids"].clone()
    labels[encoded["attention_mask"] == 0] = -100
    return {**encoded, "labels": labels}


@pytest.mark.parametrize("gradient_checkpointing", [False, True], ids=["plain", "gradient_checkpointing"])
@pytest.mark.parametrize("bits", [4, 8])
def test_kbit_training_setup_sends_gradients_to_every_adapter_weight(bits, gradient_checkpointing, make_config):
    """The quantized path's failure mode is silent: frozen adapters, or checkpointing that cuts the graph."""
    config = load_config(make_config(quantization={"bits": bits},
                                     trainer={"gradient_checkpointing": gradient_checkpointing}))
    built = build_llm(config, for_training=True)
    model = built.model
    assert getattr(model.get_base_model(), f"is_loaded_in_{bits}bit")
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # two layers x seven linear layers x A and B
    assert len(trainable) == 2 * 7 * 2
    frozen_before = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}

    model.train()
    batch = _batch(built.tokenizer, ["Sentence: Alice moved to Paris in 1999.\nRecord: person=Alice",
                                     "Sentence: Hugo moved to Lima.\nRecord: person=Hugo"])
    model(**batch).loss.backward()
    for name, p in trainable.items():
        assert p.grad is not None, f"no gradient reached {name}"
        if "lora_B" in name:  # B starts at zero, so A's first gradient is zero; B's must not be
            assert p.grad.abs().sum() > 0, f"zero gradient on {name}"

    from ludwig_llm.trainers.optim import build_optimizer

    optimizer = build_optimizer(model, load_config(make_config(trainer={"learning_rate": 0.01})).trainer)
    first = None
    for _ in range(8):
        optimizer.zero_grad()
        loss = model(**batch).loss
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert model(**batch).loss.item() < first - 0.3
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p.detach(), frozen_before[name]), f"frozen weight {name} changed"


def test_full_fine_tuning_saves_full_weights_loadable_with_transformers(make_config, small_dataset, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_config(adapter=None, trainer={"max_steps": 6, "learning_rate": 0.002})
    first, last, result = _train_loss_drop(config, small_dataset, tmp_path)
    assert last < first
    model_dir = os.path.join(result.run_directory, MODEL_DIR)
    files = set(os.listdir(model_dir))
    assert "model.safetensors" in files and "config.json" in files and "adapter_config.json" not in files
    assert json.load(open(os.path.join(model_dir, "ludwig_llm_model.json")))["weights"] == "full"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(config["base_model"])
    changed = [n for n, p in model.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert len(changed) > 10  # every weight matrix trains, not an adapter
    ids = tokenizer("Sentence: Alice moved to Paris in 1999.\nRecord:", return_tensors="pt")
    ours = LudwigLLM.load(model_dir)._loaded.built.model
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, ours(**ids).logits)


@pytest.mark.parametrize("rope", [{"type": "linear", "factor": 2.0}, {"type": "dynamic", "factor": 2.0}], ids=["linear", "dynamic"])
def test_rope_scaling_trains_and_is_kept_by_the_saved_model(rope, make_config, small_dataset, tmp_path):
    config = make_config(model_parameters={"rope_scaling": rope}, trainer={"max_steps": 2})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    assert result.training_statistics["total_steps"] == 2
    loaded = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR))
    rope_parameters = loaded._loaded.built.model.get_base_model().config.rope_parameters
    assert rope_parameters["rope_type"] == rope["type"] and rope_parameters["factor"] == 2.0


def test_neftune_noise_trains_and_only_while_training(make_config, small_dataset, tmp_path):
    config = make_config(model_parameters={"neftune_noise_alpha": 5.0}, trainer={"max_steps": 6, "learning_rate": 0.01})
    first, last, result = _train_loss_drop(config, small_dataset, tmp_path)
    assert last < first
    # the noise is a training-time hook: the saved adapter predicts deterministically
    loaded = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR))
    a = loaded.predict(small_dataset.head(3), output_directory=None).predictions
    b = loaded.predict(small_dataset.head(3), output_directory=None).predictions
    assert a.equals(b)
