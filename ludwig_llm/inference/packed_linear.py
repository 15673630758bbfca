"""oneDNN's prepacked fp32 linear for a model's `nn.Linear` layers while batched greedy decoding runs on the CPU.

A decode step multiplies a few rows (one per sequence) by every weight of the
model. PyTorch's default fp32 CPU linear (MKL) does that poorly for a few rows:
measured with SmolLM2-135M on one thread, a decode step of 16 rows took ~127 ms
with MKL and ~82 ms with oneDNN's prepacked weights (11 rows: ~124 vs ~66 ms,
4 rows: ~86 vs ~49 ms, one row: ~56 vs ~53 ms), giving the same greedy tokens;
a step is then close to the time it takes to read the weights from memory. The
arithmetic stays fp32: only the kernel (the order of the sums) changes, as it
already does between a one-row and a batched MKL call.

Packing copies every weight once (~0.4 s, and the model's weight size again in
memory, for SmolLM2-135M), so it is done once per `generate` call and only where
the weights are plain fp32 CPU tensors (not sharded, not quantized) of a size
worth copying. Torch exposes these kernels only as the operators its own
compiler uses (``torch.ops.mkldnn``); where they are missing nothing is patched.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List

import torch

# Above this much fp32 weight the packed copy doubles a memory bill that is already large; keep the plain path.
MAX_PACKED_BYTES = 4 * 1024**3


def _packable(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        type(module) is torch.nn.Linear  # not a quantized or otherwise specialised subclass
        and type(weight.data) is torch.Tensor  # not a DTensor / sharded parameter
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and tuple(weight.shape) == (module.out_features, module.in_features)  # not a ZeRO-3 placeholder
        and "forward" not in vars(module)  # not patched already (nested calls), nor wrapped by accelerate hooks
    )


def onednn_available() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def _packed_forward(weight: torch.Tensor, bias):
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
    bias = bias.detach() if bias is not None else None

    def forward(input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Linear.forward's own parameter name
        if input.dtype != torch.float32:  # e.g. under autocast: what nn.Linear would do
            return torch.nn.functional.linear(input, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(input.contiguous(), packed, bias, "none", [], "")

    return forward


@contextlib.contextmanager
def packed_linears(model) -> Iterator[int]:
    """Run the model's plain fp32 CPU `nn.Linear` layers with prepacked oneDNN weights inside the block.

    Yields how many layers were patched (0 where oneDNN is unavailable or nothing qualifies); every layer
    gets its own forward back however the block ends. The weights must not change inside the block.
    """
    modules = [m for m in model.modules() if _packable(m)] if onednn_available() else []
    if sum(m.weight.numel() * m.weight.element_size() for m in modules) > MAX_PACKED_BYTES:
        modules = []
    patched: List[torch.nn.Module] = []
    try:
        for module in modules:
            module.forward = _packed_forward(module.weight, module.bias)
            patched.append(module)
        yield len(patched)
    finally:
        for module in patched:
            del module.forward
