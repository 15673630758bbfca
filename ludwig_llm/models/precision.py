"""One rule for numeric precision: the dtype the weights load in, and the dtype training and inference compute in.

Model building (load dtype, bitsandbytes compute dtype) and the training strategies (autocast, gradient
scaler, DeepSpeed's bf16/fp16 sections) all ask `resolve_precision`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

# The schema's names (trainer.precision and quantization.bnb_4bit_compute_dtype choices) as torch dtypes.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Precision:
    compute_dtype: torch.dtype  # matrix multiplications: autocast, bitsandbytes' compute dtype, DeepSpeed's mode
    load_dtype: Optional[torch.dtype]  # unquantized weights; None leaves a quantized model's to transformers

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """The autocast dtype, or None when the model computes in fp32 (no autocast)."""
        return None if self.compute_dtype == torch.float32 else self.compute_dtype

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range."""
        return self.compute_dtype == torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX). On such a CPU (2 cores, AVX512-BF16)
    bf16 matmuls ran 2.4x fp32's, and a training step of a 6-layer SmolLM2-shaped model (batch 8 x 128) 1.4x with
    bf16 autocast, 1.65x with a bf16 base as well. Without it torch emulates bf16, slower than fp32."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe() for probe in probes if probe is not None)


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def resolve_precision(precision: str, device: torch.device, *, quantized: bool = False,
                      trains_every_weight: bool = False) -> Precision:
    """The precision of a model on `device` for `trainer.precision` (`auto`, `fp32`, `bf16` or `fp16`).

    Compute: on the CPU fp32, or bf16 when asked for and the CPU has it natively (`cpu_has_native_bf16`;
    fp16 and emulated bf16 are slower there, not faster); `auto` stays fp32 on the CPU, as bf16 changes the
    numbers (greedy outputs may differ from fp32's) and `auto` also sets the precision of prediction.
    On a GPU the precision asked for, `auto` being bf16 where the GPU has it and fp16 elsewhere.
    Load: quantized weights are bitsandbytes' business (None); full fine-tuning keeps fp32 master weights
    (autocast does the low-precision math); a frozen base (adapter training, prediction) loads in the
    compute dtype, so fp32 when autocast is off.
    """
    if device.type != "cuda":
        compute = torch.bfloat16 if precision == "bf16" and cpu_has_native_bf16() else torch.float32
    elif precision == "auto":
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        compute = PRECISION_DTYPES[precision]
    if quantized:
        load = None
    elif trains_every_weight:
        load = torch.float32
    else:
        load = compute
    return Precision(compute_dtype=compute, load_dtype=load)


def bnb_compute_dtype(requested: str, precision: Precision) -> torch.dtype:
    """bitsandbytes' compute dtype: `auto` follows the model's compute dtype."""
    return precision.compute_dtype if requested == "auto" else DTYPE_NAMES[requested]
