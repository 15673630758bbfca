"""The CPU training speed-ups: BitsDropout for LoRA inputs, eager attention for short bf16 runs, no peft input casts
under autocast. Each must leave what training computes unchanged (in distribution for the dropout)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM

from ludwig_llm.models.fast_dropout import BitsDropout, use_bits_dropout
from ludwig_llm.models.training_speed import EAGER_MAX_LENGTH, eager_is_faster, training_kernels

CPU = torch.device("cpu")


def test_bits_dropout_drops_the_asked_fraction_and_scales_the_rest():
    torch.manual_seed(0)
    dropout = BitsDropout(0.05).train()
    x = torch.ones(1000, 1001)  # an odd count: the last 64-bit word is only partly used
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.05) < 0.002
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.95))
    assert abs(y.mean().item() - 1.0) < 0.005  # unbiased, as nn.Dropout


def test_bits_dropout_masks_differ_between_calls_and_follow_the_seed():
    dropout = BitsDropout(0.3).train()
    x = torch.ones(64, 64)
    torch.manual_seed(1)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(1)
    again = dropout(x)
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_bits_dropout_is_the_identity_in_eval_mode_and_passes_gradients_through_kept_elements():
    dropout = BitsDropout(0.5)
    x = torch.randn(32, 16, requires_grad=True)
    assert dropout.eval()(x) is x
    y = dropout.train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert torch.all(x.grad[~kept] == 0)


def test_bits_dropout_keeps_the_input_dtype():
    y = BitsDropout(0.1).train()(torch.ones(8, 8, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def _lora_model(tiny_model_dir, dropout=0.1, dtype=torch.float32):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj"]))


def test_use_bits_dropout_swaps_every_lora_dropout(tiny_model_dir):
    model = _lora_model(tiny_model_dir)
    layers = model.base_model.model.config.num_hidden_layers
    assert use_bits_dropout(model) == 2 * layers
    kinds = {type(d) for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
             for d in m.lora_dropout.values()}
    assert kinds == {BitsDropout}
    assert use_bits_dropout(_lora_model(tiny_model_dir, dropout=0.0)) == 0  # peft's Identity stays


def test_training_builds_lora_with_bits_dropout(tiny_model_dir):
    from ludwig_llm.models.build import build_llm
    from ludwig_llm.schema import load_config

    config = load_config({"model_type": "llm", "base_model": tiny_model_dir, "input_features": [{"name": "q", "type": "text"}],
                          "output_features": [{"name": "a", "type": "text"}],
                          "adapter": {"type": "lora", "dropout": 0.1}, "trainer": {"type": "finetune"}})
    model = build_llm(config, for_training=True, device=CPU).model
    assert any(isinstance(m, BitsDropout) for m in model.modules())
    assert not any(type(m) is nn.Dropout and m.p > 0 for m in model.modules())


@pytest.mark.parametrize("dtype, batch, longest, expected", [
    (torch.bfloat16, 8, 130, True),
    (torch.bfloat16, 8, EAGER_MAX_LENGTH + 1, False),  # SDPA is faster on long sequences
    (torch.float32, 8, 130, False),  # and even with eager in fp32
    (torch.bfloat16, "auto", 130, False),  # the batch is not known yet
    (torch.bfloat16, 100_000, 130, False),  # the probabilities kept for backward would exceed the budget
])
def test_eager_attention_is_chosen_for_short_bf16_cpu_runs(tiny_model_dir, dtype, batch, longest, expected):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    assert eager_is_faster(model, CPU, dtype, batch, longest) is expected
    assert eager_is_faster(model, torch.device("cuda"), torch.bfloat16, 8, 130) is False


def test_training_kernels_switch_attention_and_casts_for_the_block_only(tiny_model_dir):
    model = _lora_model(tiny_model_dir)
    lora_layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert lora_layers and all(m.cast_input_dtype_enabled for m in lora_layers)
    with training_kernels(model, use_eager=True, autocast=True):
        assert model.config._attn_implementation == "eager"
        assert not any(m.cast_input_dtype_enabled for m in lora_layers)
    assert model.config._attn_implementation == "sdpa"
    assert all(m.cast_input_dtype_enabled for m in lora_layers)
    with training_kernels(model, use_eager=False, autocast=False):
        assert model.config._attn_implementation == "sdpa"
        assert all(m.cast_input_dtype_enabled for m in lora_layers)


def test_bf16_lora_step_without_input_casts_matches_the_cast_one(tiny_model_dir):
    """Under autocast the LoRA matmuls run in bf16 either way: skipping peft's float32 round trip changes nothing."""
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(0))

    def loss_and_grads(autocast_casts_off: bool):
        torch.manual_seed(0)  # the same LoRA initialisation
        model = _lora_model(tiny_model_dir, dropout=0.0, dtype=torch.bfloat16)
        with training_kernels(model, use_eager=False, autocast=autocast_casts_off), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    (loss_cast, grads_cast), (loss_plain, grads_plain) = loss_and_grads(False), loss_and_grads(True)
    assert loss_plain == pytest.approx(loss_cast, rel=1e-6)
    for a, b in zip(grads_cast, grads_plain):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)


def test_eager_and_sdpa_give_the_same_bf16_training_loss(tiny_model_dir):
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (3, 16))
    losses = {}
    for attention in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16, attn_implementation="sdpa")
        with training_kernels(model, use_eager=attention == "eager", autocast=True), torch.autocast("cpu", dtype=torch.bfloat16):
            losses[attention] = model(input_ids=ids, labels=ids).loss.item()
    assert losses["eager"] == pytest.approx(losses["sdpa"], rel=2e-2)
