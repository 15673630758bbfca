"""Quantization section: load the base model in 4 or 8 bits with bitsandbytes (QLoRA when combined with an adapter)."""

from __future__ import annotations

from typing import List, Optional

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option
from ludwig_llm.schema.registry import quantization_registry

COMPUTE_DTYPES = ["auto", "float32", "float16", "bfloat16"]


def _skip_modules():
    return option(
        None, "Modules kept in full precision, e.g. `[lm_head]`; null uses transformers' default.", impact=Impact.LOW
    )


class BaseQuantizationConfig(BaseConfig):
    """Fields shared by every quantization level."""

    def bnb_params(self) -> dict:
        return self.to_dict()


@quantization_registry.register(4)
@config_class
class FourBitQuantizationConfig(BaseQuantizationConfig):
    """4-bit weights (NF4 or FP4) with bitsandbytes: about a quarter of the 16-bit memory. With an adapter this is QLoRA."""

    title = "4-bit"
    bits: int = option(4, "Bits per weight: 4 for this class (use `bits: 8` for LLM.int8()).", choices=[4], impact=Impact.HIGH)
    bnb_4bit_quant_type: str = option(
        "nf4", "4-bit data type: `nf4` (NormalFloat, best for normally distributed weights) or `fp4`.",
        choices=["nf4", "fp4"], impact=Impact.MEDIUM,
    )
    bnb_4bit_use_double_quant: bool = option(
        True, "Quantize the quantization constants too, saving about 0.4 bits per weight.", impact=Impact.LOW
    )
    bnb_4bit_compute_dtype: str = option(
        "auto",
        "Data type of the matrix multiplications. `auto` follows `trainer.precision`: bfloat16 on GPUs that support it, "
        "float16 on other GPUs (or the precision set there), and float32 on the CPU.",
        choices=COMPUTE_DTYPES, impact=Impact.MEDIUM,
    )
    bnb_4bit_quant_storage: str = option(
        "uint8", "Storage type of the packed 4-bit weights; FSDP needs it to match the compute dtype.",
        choices=["uint8", "float16", "bfloat16", "float32"], impact=Impact.LOW,
    )
    llm_int8_skip_modules: Optional[List[str]] = _skip_modules()


@quantization_registry.register(8)
@config_class
class EightBitQuantizationConfig(BaseQuantizationConfig):
    """8-bit weights with bitsandbytes' LLM.int8(): about half the 16-bit memory, outliers kept in 16 bits."""

    title = "8-bit"
    bits: int = option(8, "Bits per weight: 8 for this class (use `bits: 4` for NF4/FP4 and QLoRA).", choices=[8], impact=Impact.HIGH)
    llm_int8_threshold: float = option(
        6.0, "Activations above this magnitude are outliers computed in 16 bits; lower is more accurate and slower.",
        min=0.0, impact=Impact.LOW,
    )
    llm_int8_has_fp16_weight: bool = option(
        False, "Keep 16-bit master weights beside the int8 ones (needed only to fine-tune the 8-bit weights themselves).",
        impact=Impact.LOW,
    )
    llm_int8_skip_modules: Optional[List[str]] = _skip_modules()
