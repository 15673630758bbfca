"""The loss taken with logits at label positions only equals the model's own loss, and so do its gradients."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PromptTuningConfig, get_peft_model
from transformers import AutoModelForCausalLM

from ludwig_llm.data.packing import PackingCollator
from ludwig_llm.data.tokenize import PaddingCollator
from ludwig_llm.trainers.label_loss import TrainingLoss, can_take_loss_at_labels_only, loss_at_labels
from tests.trainers.test_trainer_loop import PAD_ID, synthetic_rows


def tiny(model_dir, adapter=None):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    elif adapter == "lora_on_lm_head":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False))
    return model.train()


def gradients(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("adapter", [None, "lora", "lora_on_lm_head"])
@pytest.mark.parametrize("packed", [False, True])
def test_loss_and_gradients_at_label_positions_equal_the_full_logits(adapter, packed, tiny_model_dir):
    model = tiny(tiny_model_dir, adapter)
    rows = synthetic_rows(5, vary=True, seed=1)
    batch = PackingCollator(PAD_ID)([rows[:3], rows[3:]]) if packed else PaddingCollator(PAD_ID)(rows)
    extra = {"use_cache": False} if packed else {}
    items = 37.0
    full = model(**batch, **extra, num_items_in_batch=items).loss
    full.backward()
    full_gradients = gradients(model)
    model.zero_grad()
    output = loss_at_labels(model, items, **batch, **extra)
    assert output.logits.shape[0] == int((batch["labels"][:, 1:] != -100).sum())  # fewer logits than positions
    output.loss.backward()
    torch.testing.assert_close(output.loss, full, rtol=1e-5, atol=1e-6)
    label_gradients = gradients(model)
    assert label_gradients.keys() == full_gradients.keys() and full_gradients
    for name in full_gradients:
        torch.testing.assert_close(label_gradients[name], full_gradients[name], rtol=1e-4, atol=1e-6, msg=name)


def test_mean_loss_without_a_token_count(tiny_model_dir):
    model = tiny(tiny_model_dir)
    batch = PaddingCollator(PAD_ID)(synthetic_rows(3, vary=True))
    with torch.no_grad():
        torch.testing.assert_close(loss_at_labels(model, **batch).loss, model(**batch).loss, rtol=1e-5, atol=1e-6)


def test_prompt_learning_and_mask_ignoring_models_take_the_full_path(tiny_model_dir, monkeypatch):
    prompt = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert not can_take_loss_at_labels_only(prompt) and not TrainingLoss(prompt).at_labels_only
    model = tiny(tiny_model_dir)
    batch = PaddingCollator(PAD_ID)(synthetic_rows(2))
    loss = TrainingLoss(model)
    assert loss.at_labels_only

    def ignores_the_mask(**inputs):  # an architecture that keeps every position's logits
        inputs.pop("logits_to_keep", None)
        return model(**inputs)

    with torch.no_grad():
        value = loss(ignores_the_mask, dict(batch), 4.0)
        torch.testing.assert_close(value, model(**batch, num_items_in_batch=4.0).loss)
    assert not loss.at_labels_only


def test_training_logs_the_same_losses_as_with_full_logits(tiny_model_dir, tmp_path, monkeypatch):
    from ludwig_llm.trainers import finetune
    from tests.conftest import tiny_config
    from tests.trainers.test_trainer_loop import run

    rows = synthetic_rows(16, vary=True)
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 3, "batch_size": 4, "gradient_accumulation_steps": 2,
                                                  "checkpoint_steps": 3, "optimizer": {"type": "sgd"}, "learning_rate": 0.5})
    at_labels = run(config, tiny_model_dir, tmp_path / "labels", rows)
    monkeypatch.setattr(finetune, "TrainingLoss", lambda model: TrainingLoss(model, enabled=False))
    full = run(config, tiny_model_dir, tmp_path / "full", rows)
    for a, b in zip(at_labels["steps"], full["steps"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
