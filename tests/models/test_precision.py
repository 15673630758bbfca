"""The one precision rule (models/precision.py): what trainer.precision means for the load dtype, autocast and
the gradient scaler on each device, and that model building and the strategies follow it. No GPU here: CUDA
devices are fakes, and `torch.cuda` is patched where a function asks it."""

from __future__ import annotations

import pytest
import torch

from ludwig_llm.models.build import build_llm, model_precision, quantization_options
from ludwig_llm.models.precision import bnb_compute_dtype, resolve_precision
from ludwig_llm.schema import load_config
from ludwig_llm.trainers.strategies import DeepSpeedStrategy, Strategy
from tests.conftest import tiny_config

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16


@pytest.fixture
def fake_gpu(monkeypatch):
    """This process sees one CUDA device; `bf16` says whether it supports bfloat16."""

    def make(bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)

    return make


@pytest.mark.parametrize("precision, device, bf16, quantized, every_weight, load, compute", [
    # the CPU computes in fp32 whatever is asked: low precision is slower there, not faster
    ("auto", CPU, False, False, False, F32, F32),
    ("bf16", CPU, False, False, True, F32, F32),
    ("fp16", CPU, False, True, False, None, F32),
    # a frozen base (adapter training, prediction) loads in the compute dtype
    ("auto", GPU, True, False, False, BF16, BF16),
    ("auto", GPU, False, False, False, F16, F16),
    ("bf16", GPU, True, False, False, BF16, BF16),
    ("fp16", GPU, True, False, False, F16, F16),
    ("fp32", GPU, True, False, False, F32, F32),  # the bug: the base loaded in bf16 with autocast off
    # full fine-tuning keeps fp32 master weights; autocast does the low-precision math
    ("auto", GPU, True, False, True, F32, BF16),
    ("fp16", GPU, True, False, True, F32, F16),
    # quantized weights are bitsandbytes' business
    ("auto", GPU, True, True, False, None, BF16),
    ("fp32", GPU, True, True, False, None, F32),
])
def test_the_precision_rule(fake_gpu, monkeypatch, precision, device, bf16, quantized, every_weight, load, compute):
    fake_gpu(bf16)
    monkeypatch.setattr("ludwig_llm.models.precision.cpu_has_native_bf16", lambda: False)
    resolved = resolve_precision(precision, device, quantized=quantized, trains_every_weight=every_weight)
    assert (resolved.load_dtype, resolved.compute_dtype) == (load, compute)
    assert resolved.autocast_dtype == (None if compute == F32 else compute)
    assert resolved.needs_grad_scaler == (compute == F16)


def test_fp32_with_an_adapter_on_a_gpu_loads_the_base_in_fp32(fake_gpu, tiny_model_dir):
    fake_gpu(bf16=True)
    config = load_config(tiny_config(tiny_model_dir, trainer={"precision": "fp32"}))
    assert model_precision(config, GPU, for_training=True).load_dtype == F32
    built = build_llm(config, for_training=True)  # stays on the CPU: training places the model itself
    base_weights = [p for name, p in built.model.named_parameters() if "lora_" not in name]
    assert base_weights and all(p.dtype == F32 for p in base_weights)
    # and with `auto` the same GPU gets a bf16 base: the test can tell the two apart
    auto = load_config(tiny_config(tiny_model_dir, trainer={"precision": "auto"}))
    assert model_precision(auto, GPU, for_training=True).load_dtype == BF16


def test_strategies_follow_the_rule(fake_gpu, tiny_model_dir):
    fake_gpu(bf16=True)

    class Session:
        world_size, rank, is_main = 2, 0, True

    def trainer(precision):
        return load_config(tiny_config(tiny_model_dir, trainer={"precision": precision})).trainer

    autocast, scaler = Strategy(None, Session(), GPU, trainer("fp32")).autocast()
    assert not isinstance(autocast, torch.autocast) and scaler is None
    assert Strategy(None, Session(), CPU, trainer("bf16")).autocast()[1] is None
    options = load_config(tiny_config(tiny_model_dir, backend={"type": "ray", "trainer": {
        "num_workers": 2, "use_gpu": True, "strategy": {"type": "deepspeed"}}})).backend.trainer.strategy
    assert "bf16" not in DeepSpeedStrategy(options, Session(), GPU, trainer("fp32"))._deepspeed_config()
    assert DeepSpeedStrategy(options, Session(), GPU, trainer("auto"))._deepspeed_config()["bf16"] == {"enabled": True}
    assert DeepSpeedStrategy(options, Session(), GPU, trainer("fp16"))._deepspeed_config()["fp16"] == {"enabled": True}


def test_the_4bit_compute_dtype_auto_follows_the_precision(fake_gpu, tiny_model_dir):
    fake_gpu(bf16=True)
    for precision, expected in (("auto", BF16), ("fp16", F16), ("fp32", F32)):
        config = load_config(tiny_config(tiny_model_dir, quantization={"bits": 4}, trainer={"precision": precision}))
        options = quantization_options(config, model_precision(config, GPU, for_training=True))
        assert options["bnb_4bit_compute_dtype"] == expected, precision
    config = load_config(tiny_config(tiny_model_dir, quantization={"bits": 4, "bnb_4bit_compute_dtype": "float16"}))
    assert bnb_compute_dtype("float16", model_precision(config, CPU, for_training=True)) == F16


@pytest.mark.parametrize("precision, native, every_weight, load, compute", [
    ("bf16", True, False, BF16, BF16),  # adapter training and prediction: a bf16 base
    ("bf16", True, True, F32, BF16),  # full fine-tuning: fp32 master weights, bf16 autocast
    ("bf16", False, False, F32, F32),  # emulated bf16 is slower than fp32
    ("auto", True, False, F32, F32),  # auto keeps the CPU's fp32 results (see the field's description)
])
def test_bf16_on_a_cpu_with_native_bf16(monkeypatch, precision, native, every_weight, load, compute):
    monkeypatch.setattr("ludwig_llm.models.precision.cpu_has_native_bf16", lambda: native)
    resolved = resolve_precision(precision, CPU, trains_every_weight=every_weight)
    assert (resolved.load_dtype, resolved.compute_dtype, resolved.needs_grad_scaler) == (load, compute, False)


def test_bf16_training_on_the_cpu_autocasts_there(monkeypatch, tiny_model_dir, tmp_path):
    from ludwig_llm.trainers import finetune
    from tests.trainers.test_trainer_loop import run, synthetic_rows

    monkeypatch.setattr("ludwig_llm.models.precision.cpu_has_native_bf16", lambda: True)
    seen = []
    original = finetune.FineTuneRecipe.train_step

    def train_step(recipe, micro_batches):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), recipe.autocast))
        return original(recipe, micro_batches)

    monkeypatch.setattr(finetune.FineTuneRecipe, "train_step", train_step)
    rows = synthetic_rows(8)
    common = {"max_steps": 1, "batch_size": 8, "optimizer": {"type": "sgd"}}
    bf16 = run(tiny_config(tiny_model_dir, trainer={**common, "precision": "bf16"}), tiny_model_dir, tmp_path / "bf16", rows)
    fp32 = run(tiny_config(tiny_model_dir, trainer={**common, "precision": "fp32"}), tiny_model_dir, tmp_path / "fp32", rows)
    assert isinstance(seen[0][2], torch.autocast) and seen[0][2].fast_dtype == BF16 and seen[0][2].device == "cpu"
    assert not isinstance(seen[1][2], torch.autocast)
    assert bf16["steps"][0]["loss"] == pytest.approx(fp32["steps"][0]["loss"], rel=2e-2)
    assert bf16["steps"][0]["loss"] != fp32["steps"][0]["loss"]  # it did compute in bf16
