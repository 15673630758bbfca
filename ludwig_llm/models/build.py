"""Build the model a config describes: base model (quantized, RoPE-scaled) + adapter, and its tokenizer.

`model_type: llm` routes here (see MODEL_BUILDERS); training and prediction both start from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ludwig_llm.models import adapters, loader
from ludwig_llm.models.resolve import resolve_base_model


@dataclass
class BuiltModel:
    model: Any
    tokenizer: Any
    base_model_path: str
    quantized: bool


def compute_dtype_name(requested: str) -> str:
    """'auto' -> the fastest dtype this machine computes well in: bf16/fp16 on a GPU, fp32 on the CPU."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def quantization_options(config) -> Optional[dict]:
    """Our quantization section as loader.load_base_model takes it (unset options left to bitsandbytes)."""
    if config.quantization is None:
        return None
    options = {k: v for k, v in config.quantization.bnb_params().items() if v is not None}
    if "bnb_4bit_compute_dtype" in options:
        options["bnb_4bit_compute_dtype"] = compute_dtype_name(options["bnb_4bit_compute_dtype"])
    return options


def build_llm(config, *, for_training: bool, padding_side: str = "right", base_model_path: Optional[str] = None,
              adapter_path: Optional[str] = None) -> BuiltModel:
    """Load the base model and tokenizer, and attach the adapter the config asks for.

    ``adapter_path`` (a saved adapter, e.g. of a trained run) wins over the config's
    ``pretrained_adapter_weights``. Full fine-tuning (no adapter) trains every weight.
    """
    trust = config.model_parameters.trust_remote_code
    path = base_model_path or resolve_base_model(config.base_model)
    loader.check_remote_code(path, trust)
    tokenizer = loader.load_tokenizer(path, trust_remote_code=trust, padding_side=padding_side)
    rope = config.model_parameters.rope_scaling
    quantization = quantization_options(config)
    model = loader.load_base_model(
        path,
        quantization=quantization,
        rope_scaling=rope.rope_params() if rope is not None else None,
        trust_remote_code=trust,
        dtype=_weights_dtype(config, for_training),
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
            _adapter_params(config, for_training),
            pretrained_adapter_weights=saved_adapter,
            is_trainable=for_training,
        )
    if not for_training:
        model.eval()
        if quantization is None:
            import torch

            if torch.cuda.is_available():
                model.to("cuda")
    return BuiltModel(model=model, tokenizer=tokenizer, base_model_path=path, quantized=quantization is not None)


def _adapter_params(config, for_training: bool) -> Optional[dict]:
    if config.adapter is None:
        return None
    params = config.adapter.peft_params()
    if config.adapter.type == "adalora" and params.get("total_step") is None:
        params.pop("total_step", None)
    return params


def _weights_dtype(config, for_training: bool) -> Optional[str]:
    """Unquantized weights: fp32 for training on the CPU (bf16 CPU kernels are slow and lossy), else the compute dtype."""
    if config.quantization is not None:
        return None
    import torch

    if not torch.cuda.is_available():
        return "float32"
    precision = getattr(config.trainer, "precision", "auto")
    if for_training and config.adapter is None:
        # Full fine-tuning keeps fp32 master weights; autocast does the low-precision math.
        return "float32"
    if precision in ("bf16", "fp16"):
        return {"bf16": "bfloat16", "fp16": "float16"}[precision]
    return compute_dtype_name("auto")
