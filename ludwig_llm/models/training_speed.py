"""Two choices that make mixed-precision training faster without changing what it computes.

1. The attention kernel: the model's eager attention for short sequences in bf16 on the CPU.

transformers runs SDPA by default. On the CPU its bf16 kernel (flash attention for the CPU) is slow on short
sequences. Forward + backward of one SmolLM2-135M attention layer (9 heads, 3 key/value heads, head dim 64,
causal, 1024 tokens a batch, 1 thread), eager / SDPA in ms:

    bf16:  16 x 64: 9.7 / 28.8   8 x 128: 12.7 / 33.7   4 x 256: 24.7 / 35.5   2 x 512: 44.2 / 59.1   1 x 1024: 108.5 / 96.0
    fp32:  16 x 64: 12.3 / 13.3  8 x 128: 19.2 / 19.9   4 x 256: 33.6 / 31.7   2 x 512: 84.3 / 60.5   1 x 1024: 221.8 / 136.6

So bf16 training on the CPU whose sequences are at most 512 tokens runs the model's own eager attention (the same
algorithm, in plain matmuls and a float32 softmax); fp32 and GPUs keep SDPA. Eager attention keeps each layer's
batch x heads x length^2 probabilities for the backward pass (about 6 bytes each: float32 softmax output, bf16
copy), so it is also limited to runs where that stays under `EAGER_MEMORY_BUDGET`.

2. No cast of LoRA inputs under autocast. peft casts each LoRA module's input to the adapter's dtype (float32)
before its dropout and `lora_A`, and autocast casts it back to bf16 for the matmul: two copies of the input per
module and a float32 dropout, for the same bf16 product. Under autocast the casts are skipped
(`peft.helpers.disable_input_dtype_casting`); without autocast the input already has the adapter's dtype.
Measured on SmolLM2-135M, LoRA on q/k/v/o, bf16, 1 thread, 6 profiled steps: 2,844 of the 23,436 copies go; their time
(about 6% of a step before and after) moved within the machine's noise, so the gain is small: what remains is RMSNorm's
and the eager softmax's float32 round trips inside the model.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from peft.helpers import disable_input_dtype_casting

EAGER_MAX_LENGTH = 512
EAGER_MEMORY_BUDGET = 1 << 30  # bytes of attention probabilities kept for backward, all layers together
_BYTES_PER_PROBABILITY = 6


def eager_is_faster(model, device: torch.device, compute_dtype: torch.dtype, batch_size: Optional[int], longest: int) -> bool:
    """Whether training `model` in micro-batches of `batch_size` sequences of up to `longest` tokens should run eager attention."""
    if device.type != "cpu" or compute_dtype != torch.bfloat16 or not isinstance(batch_size, int):
        return False
    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa" or longest > EAGER_MAX_LENGTH:
        return False
    heads = getattr(config, "num_attention_heads", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not heads or not layers:
        return False
    return batch_size * heads * layers * longest**2 * _BYTES_PER_PROBABILITY <= EAGER_MEMORY_BUDGET


@contextlib.contextmanager
def training_kernels(model, *, use_eager: bool, autocast: bool):
    """Run the block with eager attention when `use_eager` and without peft's input casts under `autocast`, then give
    the model back as it was (prediction after training, and the saved model, see what loading gives)."""
    original = model.config._attn_implementation
    if use_eager:
        model.set_attn_implementation("eager")
    try:
        with disable_input_dtype_casting(model, active=autocast):
            yield
    finally:
        if use_eager:
            model.set_attn_implementation(original)
