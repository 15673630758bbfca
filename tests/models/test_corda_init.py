"""`init_lora_weights: corda` (Ludwig's peft_advanced example): forwards over training rows through the base model,
before the adapter is attached, orient the SVD LoRA starts from; the base weights keep the rest. The saved adapter is
converted to a plain LoRA of rank 2r, so it loads on the unchanged base model and gives the trained model's outputs."""

from __future__ import annotations

import json
import os

import pytest
import torch
from peft import PeftModel

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import ConfigValidationError
from ludwig_llm.models.build import build_llm
from ludwig_llm.models.initial_adapter import initial_adapter_path
from ludwig_llm.models.loader import load_base_model
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.schema import load_config

TARGETS = ["q_proj", "v_proj", "up_proj"]


def corda_adapter(**corda_config):
    return {"type": "lora", "r": 4, "init_lora_weights": "corda", "corda_config": corda_config, "target_modules": TARGETS}


def calibration_rows(count=16):
    return [{"input_ids": [1] + [10 + (i * 7 + j) % 300 for j in range(24)], "labels": [-100] * 12 + [10 + j for j in range(13)]}
            for i in range(count)]


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_corda_starts_from_the_calibration_and_its_saved_adapter_fits_the_unchanged_base(make_config, tiny_model_dir, tmp_path):
    probe = torch.tensor([[1, 20, 31, 42, 53, 64, 75]])
    base_logits = logits(load_base_model(tiny_model_dir, dtype=torch.float32), probe)

    default = build_llm(load_config(make_config(adapter={**corda_adapter(), "init_lora_weights": True})), for_training=True,
                        base_model_path=tiny_model_dir, device=torch.device("cpu")).model
    model = build_llm(load_config(make_config(adapter=corda_adapter(corda_method="kpm"))), for_training=True,
                      base_model_path=tiny_model_dir, device=torch.device("cpu"), calibration_rows=calibration_rows()).model
    assert model.peft_config["default"].corda_config.corda_method == "kpm"
    b = {name: p for name, p in model.named_parameters() if "lora_B" in name}
    default_b = {name: p for name, p in default.named_parameters() if "lora_B" in name}
    assert b.keys() == default_b.keys() and all(p.abs().sum() == 0 for p in default_b.values())
    assert all(p.abs().sum() > 0 for p in b.values())  # the decomposition ran: B is not the default zeros
    # The residual base plus the initial adapter is the base model, to float precision.
    torch.testing.assert_close(logits(model, probe), base_logits, atol=1e-4, rtol=1e-4)

    with torch.no_grad():  # stand-in for training
        for parameter in b.values():
            parameter.add_(0.01)
    trained_logits = logits(model, probe)
    assert initial_adapter_path(model) and initial_adapter_path(default) is None
    model.save_pretrained(str(tmp_path / "adapter"), path_initial_model_for_weight_conversion=initial_adapter_path(model))
    saved = json.load(open(tmp_path / "adapter" / "adapter_config.json"))
    assert saved["r"] == 8 and saved["init_lora_weights"] is True
    reloaded = PeftModel.from_pretrained(load_base_model(tiny_model_dir, dtype=torch.float32), str(tmp_path / "adapter"))
    torch.testing.assert_close(logits(reloaded, probe), trained_logits, atol=1e-4, rtol=1e-4)


def test_a_run_with_corda_trains_saves_loads_and_predicts(make_config, small_dataset, tmp_path):
    config = make_config(adapter=corda_adapter(calibration_rows=8), trainer={"max_steps": 2})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    model_directory = os.path.join(result.run_directory, MODEL_DIR)
    saved = json.load(open(os.path.join(model_directory, "adapter_config.json")))
    assert saved["r"] == 8 and saved["init_lora_weights"] is True  # converted to a plain LoRA on the unchanged base
    predictions = LudwigLLM.load(model_directory).predict(small_dataset.head(2), output_directory=None).predictions
    assert len(predictions) == 2


def test_corda_config_reaches_peft_and_unsafe_or_unsupported_settings_are_refused(make_config):
    adapter = load_config(make_config(adapter=corda_adapter(corda_method="kpm", calibration_rows=3))).adapter
    assert adapter.peft_params()["corda_config"] == {"corda_method": "kpm", "use_float16_for_covariance": False, "verbose": False}
    assert load_config(make_config(adapter=corda_adapter())).adapter.corda_settings().corda_method == "ipm"
    with pytest.raises(ConfigValidationError, match="cache_file"):  # peft reads it back with torch.load
        load_config(make_config(adapter=corda_adapter(cache_file="svd.pt")))
    with pytest.raises(ConfigValidationError, match="several Ray workers"):
        load_config(make_config(adapter=corda_adapter(), backend={"type": "ray", "trainer": {"num_workers": 2}}))
    with pytest.raises(ConfigValidationError, match="CorDA decomposes the full-precision weights"):
        load_config(make_config(adapter=corda_adapter(), quantization={"bits": 4}))
