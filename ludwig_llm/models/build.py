"""Build the model a config describes: base model (quantized, RoPE-scaled) + adapter, and its tokenizer.

`model_type: llm` routes here (see MODEL_BUILDERS); training and prediction both start from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import torch

from ludwig_llm.errors import UserError
from ludwig_llm.models import adapters, loader
from ludwig_llm.models.fast_dropout import use_bits_dropout
from ludwig_llm.models.precision import Precision, bnb_compute_dtype, default_device, resolve_precision
from ludwig_llm.models.resolve import resolve_base_model


@dataclass
class BuiltModel:
    model: Any
    tokenizer: Any
    base_model_path: str
    quantized: bool


def model_precision(config, device: torch.device, *, for_training: bool) -> Precision:
    """The precision `config` asks for on `device`. The in-context trainer (`none`) has no precision: `auto`."""
    return resolve_precision(getattr(config.trainer, "precision", "auto"), device, quantized=config.quantization is not None,
                             trains_every_weight=for_training and config.adapter is None)


def quantization_options(config, precision: Precision) -> Optional[dict]:
    """Our quantization section as loader.load_base_model takes it (unset options left to bitsandbytes)."""
    if config.quantization is None:
        return None
    options = {k: v for k, v in config.quantization.bnb_params().items() if v is not None}
    if "bnb_4bit_compute_dtype" in options:
        options["bnb_4bit_compute_dtype"] = bnb_compute_dtype(options["bnb_4bit_compute_dtype"], precision)
    return options


def build_llm(config, *, for_training: bool, padding_side: str = "right", base_model_path: Optional[str] = None,
              adapter_path: Optional[str] = None, total_steps: Optional[int] = None,
              device: Optional[torch.device] = None, calibration_rows: Optional[Sequence[dict]] = None) -> BuiltModel:
    """Load the base model and tokenizer, and attach the adapter the config asks for.

    ``adapter_path`` (a saved adapter, e.g. of a trained run) wins over the config's
    ``pretrained_adapter_weights``. Full fine-tuning (no adapter) trains every weight.
    ``total_steps``: the optimizer steps of the training run, which AdaLoRA's rank schedule needs
    when the config leaves ``total_step`` unset. ``device``: where the model will compute (the
    training worker's device); it decides the precision. Prediction moves the model there itself.
    ``calibration_rows``: the tokenized training rows, for a new CorDA adapter (it uses `corda_config.calibration_rows`).
    """
    device = device or default_device()
    precision = model_precision(config, device, for_training=for_training)
    trust = config.model_parameters.trust_remote_code
    path = base_model_path or resolve_base_model(config.base_model)
    loader.check_remote_code(path, trust)
    tokenizer = loader.load_tokenizer(path, trust_remote_code=trust, padding_side=padding_side)
    rope = config.model_parameters.rope_scaling
    quantization = quantization_options(config, precision)
    model = loader.load_base_model(
        path,
        quantization=quantization,
        rope_scaling=rope.rope_params() if rope is not None else None,
        trust_remote_code=trust,
        dtype=precision.load_dtype,
    )
    trainer = config.trainer
    if for_training and config.adapter is not None:
        model = loader.prepare_for_kbit_training(model, gradient_checkpointing=trainer.gradient_checkpointing)
    elif for_training and trainer.gradient_checkpointing:
        loader.enable_gradient_checkpointing(model)

    saved_adapter = adapter_path or (config.adapter.pretrained_adapter_weights if config.adapter else None)
    if config.adapter is not None or adapter_path:
        model = adapters.apply_adapter(
            model,
            config.adapter.type if config.adapter else None,
            _adapter_params(config, total_steps),
            pretrained_adapter_weights=saved_adapter,
            is_trainable=for_training,
            calibration_rows=_corda_calibration(config, calibration_rows),
        )
    if for_training:
        use_bits_dropout(model)  # peft's nn.Dropout draws its masks slowly on the CPU (models/fast_dropout.py)
    if for_training and getattr(trainer, "layers_to_freeze_regex", None):
        freeze_matching(model, trainer.layers_to_freeze_regex)
    if not for_training:
        model.eval()
        if quantization is None:  # bitsandbytes placed the quantized weights when loading
            model.to(device)
    return BuiltModel(model=model, tokenizer=tokenizer, base_model_path=path, quantized=quantization is not None)


def freeze_matching(model, pattern: str) -> int:
    """Freeze the parameters whose names match ``pattern`` (``trainer.layers_to_freeze_regex``); returns how many."""
    matched = [p for name, p in model.named_parameters() if re.search(pattern, name)]
    if not matched:
        example = next((name for name, _ in model.named_parameters()), "")
        raise UserError(f"trainer.layers_to_freeze_regex: {pattern!r} matches no parameter of the model "
                        f"(names look like {example!r}).")
    for parameter in matched:
        parameter.requires_grad = False
    return len(matched)


def _corda_calibration(config, rows: Optional[Sequence[dict]]) -> Optional[List[dict]]:
    if rows is None or getattr(config.adapter, "init_lora_weights", None) != "corda":
        return None
    return list(rows)[: config.adapter.corda_settings().calibration_rows]


def _adapter_params(config, total_steps: Optional[int]) -> Optional[dict]:
    if config.adapter is None:
        return None
    params = config.adapter.peft_params()
    if config.adapter.type == "adalora" and params.get("total_step") is None and total_steps is not None:
        params["total_step"] = total_steps  # AdaLoRA's rank schedule spans the whole training run
    return params
