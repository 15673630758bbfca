"""`init_lora_weights: eva` (Ludwig's peft_advanced example): a calibration pass over the training rows before
training sets LoRA's A matrices from each layer's input activations and redistributes the rank; the trained adapter
saves and loads like any other."""

from __future__ import annotations

import json
import os

import torch

from ludwig_llm.api import LudwigLLM
from ludwig_llm.models.adapters import build_peft_config, initialize_from_training_rows
from ludwig_llm.models.build import build_llm
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.schema import load_config


def eva_adapter(**eva_config):
    return {"type": "lora", "r": 4, "init_lora_weights": "eva", "eva_config": {"rho": 2.0, **eva_config},
            "target_modules": ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]}


def test_eva_initializes_lora_from_the_training_rows(make_config, tiny_model_dir):
    config = load_config(make_config(adapter=eva_adapter()))
    model = build_llm(config, for_training=True, base_model_path=tiny_model_dir, device=torch.device("cpu")).model
    rows = [{"input_ids": [1] + [10 + (i * 7 + j) % 300 for j in range(12)], "labels": [-100] * 6 + [10 + j for j in range(7)]}
            for i in range(16)]
    initialize_from_training_rows(model, rows, pad_token_id=3, batch_size=4, device=torch.device("cpu"))
    ranks = model.peft_config["default"].rank_pattern
    assert ranks and sum(ranks.values()) <= 4 * 2 * 5  # the budget: r per adapted layer (2 layers x 5 modules)
    assert len(set(ranks.values())) > 1  # moved between layers
    a = next(p for name, p in model.named_parameters() if "lora_A" in name)
    assert torch.isfinite(a).all() and a.abs().sum() > 0


def test_a_run_with_eva_trains_saves_and_predicts(make_config, small_dataset, tmp_path):
    config = make_config(adapter=eva_adapter(), trainer={"max_steps": 2})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    model_directory = os.path.join(result.run_directory, MODEL_DIR)
    saved = json.load(open(os.path.join(model_directory, "adapter_config.json")))
    assert saved["init_lora_weights"] == "eva" and saved["rank_pattern"]
    predictions = LudwigLLM.load(model_directory).predict(small_dataset.head(2), output_directory=None).predictions
    assert len(predictions) == 2


def test_eva_config_reaches_peft(make_config):
    peft_config = build_peft_config("lora", load_config(make_config(adapter=eva_adapter(tau=0.9))).adapter.peft_params())
    assert peft_config.init_lora_weights == "eva" and peft_config.eva_config.tau == 0.9 and peft_config.eva_config.rho == 2.0
