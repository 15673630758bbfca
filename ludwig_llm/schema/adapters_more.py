"""More peft tuners for causal LMs, as Ludwig lists them: orthogonal (OFT, BOFT, HRA), layer-norm tuning, and
compact-update methods (VB-LoRA, FourierFT, C3A, TinyLoRA). Same pattern as `adapters.py`: each class is the type's
one registration and names its peft config; field names and defaults are peft's unless a description says why not.
"""

from __future__ import annotations

from typing import Any, List, Optional

from ludwig_llm.schema.adapters import (
    AdapterPostprocessorConfig,
    BaseAdapterConfig,
    _modules_to_save,
    _postprocessor,
    _pretrained,
    _target_modules,
)
from ludwig_llm.schema.base import config_class
from ludwig_llm.schema.fields import Impact, option
from ludwig_llm.schema.registry import adapter_registry


def _type(name: str):
    return option(name, "Adapter type.", choices=[name], impact=Impact.HIGH)


def _bias(choices=("none", "all")):
    return option("none", "Which biases are trained besides the adapter: none, all, or only those of adapted layers.", choices=list(choices), impact=Impact.LOW)


@adapter_registry.register("oft")
@config_class
class OFTConfig(BaseAdapterConfig):
    """Orthogonal Fine-Tuning (OFT): multiplies each adapted weight by a learned block-diagonal orthogonal matrix,
    which keeps the angles between neurons (the pretrained knowledge) intact."""

    title = "OFT"
    implementation = "peft:OFTConfig"
    type: str = _type("oft")
    r: int = option(0, "Number of orthogonal blocks; 0 derives it from `oft_block_size` (give one of the two).", min=0, impact=Impact.MEDIUM)
    oft_block_size: int = option(32, "Size of each orthogonal block; it must divide the adapted layers' input size. "
                                 "0 derives it from `r`.", min=0, impact=Impact.HIGH)
    module_dropout: float = option(0.0, "Probability of using the identity instead of a whole block during a step.", min=0.0, max=1.0, impact=Impact.LOW)
    coft: bool = option(False, "Constrained OFT: keep the orthogonal matrix within `eps` of the identity.", impact=Impact.LOW)
    eps: float = option(6e-5, "Constrained OFT's radius (only with `coft`).", min=0.0, impact=Impact.LOW)
    block_share: bool = option(False, "Share one orthogonal block across a layer's blocks (fewer parameters).", impact=Impact.LOW)
    use_cayley_neumann: bool = option(True, "Approximate the Cayley transform with a Neumann series (faster).", impact=Impact.LOW)
    num_cayley_neumann_terms: int = option(5, "Terms of that Neumann series.", min=1, impact=Impact.LOW)
    init_weights: bool = option(True, "Start at the identity, i.e. from the base model exactly.", impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "oft_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("boft")
@config_class
class BOFTConfig(BaseAdapterConfig):
    """Butterfly OFT (BOFT): an orthogonal update built from a product of sparse butterfly factors, dense at a
    fraction of OFT's parameters."""

    title = "BOFT"
    implementation = "peft:BOFTConfig"
    type: str = _type("boft")
    boft_block_size: int = option(4, "Size of each butterfly block; give it or `boft_block_num` (the other 0). It must "
                                  "divide the adapted layers' input size.", min=0, impact=Impact.HIGH)
    boft_block_num: int = option(0, "Number of butterfly blocks; 0 derives it from `boft_block_size`.", min=0, impact=Impact.MEDIUM)
    boft_n_butterfly_factor: int = option(1, "Butterfly factors in the product; 1 is plain block-diagonal OFT.", min=1, impact=Impact.MEDIUM)
    boft_dropout: float = option(0.0, "Multiplicative dropout on the butterfly blocks.", min=0.0, max=1.0, impact=Impact.LOW)
    init_weights: bool = option(True, "Start at the identity, i.e. from the base model exactly.", impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "boft_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("hra")
@config_class
class HRAConfig(BaseAdapterConfig):
    """Householder Reflection Adaptation (HRA): an orthogonal update made of `r` learned Householder reflections."""

    title = "HRA"
    implementation = "peft:HRAConfig"
    type: str = _type("hra")
    r: int = option(8, "Number of Householder reflections; an even number is best with the default init.", min=1, impact=Impact.HIGH)
    apply_GS: bool = option(False, "Orthogonalize the reflection vectors with Gram-Schmidt.", impact=Impact.LOW)
    init_weights: bool = option(True, "Start at the identity, i.e. from the base model exactly.", impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "hra_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("ln_tuning")
@config_class
class LNTuningConfig(BaseAdapterConfig):
    """Layer-norm tuning: trains copies of the layer-norm weights only (a few thousand parameters)."""

    title = "LayerNorm tuning"
    implementation = "peft:LNTuningConfig"
    type: str = _type("ln_tuning")
    target_modules: Optional[List[str]] = option(
        None, "Names (or suffixes) of the norm layers to tune, e.g. `[input_layernorm, post_attention_layernorm]`; "
        "null uses peft's default for the architecture.", impact=Impact.MEDIUM,
    )
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("vblora")
@config_class
class VBLoRAConfig(BaseAdapterConfig):
    """VB-LoRA: every low-rank update is composed from a small bank of vectors shared by all layers (top-k mixing)."""

    title = "VB-LoRA"
    implementation = "peft:VBLoRAConfig"
    type: str = _type("vblora")
    r: int = option(4, "Rank of the composed update.", min=1, impact=Impact.HIGH)
    num_vectors: int = option(256, "Vectors in the shared bank.", min=1, impact=Impact.HIGH)
    vector_length: int = option(256, "Length of each bank vector; it must divide the adapted layers' sizes.", min=1, impact=Impact.HIGH)
    topk: int = option(2, "Bank vectors mixed per sub-vector of the update; more is more expressive.", min=1, impact=Impact.MEDIUM)
    vblora_dropout: float = option(0.0, "Dropout on the adapter's input.", min=0.0, max=1.0, impact=Impact.LOW)
    save_only_topk_weights: bool = option(False, "Save only the top-k logits (smaller files; the adapter can then only be used "
                                          "for prediction, not trained further).", impact=Impact.LOW)
    init_vector_bank_bound: float = option(0.02, "The bank starts uniform in [-bound, bound].", min=0.0, impact=Impact.LOW)
    init_logits_std: float = option(0.1, "Standard deviation of the initial mixing logits.", min=0.0, impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "vblora_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("fourierft")
@config_class
class FourierFTConfig(BaseAdapterConfig):
    """FourierFT: learns `n_frequency` spectral coefficients per weight; the update is their inverse Fourier transform."""

    title = "FourierFT"
    implementation = "peft:FourierFTConfig"
    type: str = _type("fourierft")
    n_frequency: int = option(1000, "Learned spectral coefficients per adapted weight; at most its in x out size.", min=1, impact=Impact.HIGH)
    scaling: float = option(150.0, "Scale of the update, like LoRA's `alpha / r` (100 to 300 usually).", min=0.0, min_inclusive=False, impact=Impact.HIGH)
    random_loc_seed: int = option(777, "Seed that picks the frequencies (saved so the adapter can be rebuilt).", impact=Impact.LOW)
    init_weights: bool = option(False, "Start the coefficients at zero (from the base model exactly) instead of random.", impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "fourier_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("c3a")
@config_class
class C3AConfig(BaseAdapterConfig):
    """C3A: the update is a block-circulant matrix, applied by FFT; parameters grow with `block_size`, not with rank."""

    title = "C3A"
    implementation = "peft:C3AConfig"
    type: str = _type("c3a")
    block_size: int = option(256, "Size of each circulant block; it must divide the adapted layers' input and output sizes.", min=1, impact=Impact.HIGH)
    init_weights: str = option("xavier_uniform", "Initialization of the circulant kernels: `xavier_uniform`, "
                               "`kaiming_uniform`, or `gaussian`.", choices=["xavier_uniform", "kaiming_uniform", "gaussian"], impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "c3a_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()


@adapter_registry.register("tinylora")
@config_class
class TinyLoraConfig(BaseAdapterConfig):
    """TinyLoRA: a rank-`r` SVD update steered by a tiny trainable vector of length `u` through fixed random projections."""

    title = "TinyLoRA"
    implementation = "peft:TinyLoraConfig"
    type: str = _type("tinylora")
    r: int = option(2, "Rank of the frozen SVD basis; 2 is the paper's choice.", min=1, impact=Impact.HIGH)
    u: int = option(64, "Length of the trainable vector per layer (13 for extreme efficiency).", min=1, impact=Impact.HIGH)
    weight_tying: float = option(0.0, "Share trainable vectors across layers: 0 none, 1 one vector for all.", min=0.0, max=1.0, impact=Impact.MEDIUM)
    projection_seed: int = option(42, "Seed of the fixed random projections.", impact=Impact.LOW)
    save_projection: bool = option(True, "Save the projections with the adapter (else they are rebuilt from the seed).", impact=Impact.LOW)
    init_v_bound: float = option(0.02, "The trainable vectors start uniform in [-bound, bound].", min=0.0, impact=Impact.LOW)
    tinylora_dropout: float = option(0.0, "Dropout on the adapter's input.", min=0.0, max=1.0, impact=Impact.LOW)
    init_weights: bool = option(True, "Start the update at zero, i.e. from the base model exactly.", impact=Impact.LOW)
    target_modules: Any = _target_modules()
    bias: str = _bias(("none", "all", "tinylora_only"))
    modules_to_save: Optional[List[str]] = _modules_to_save()
    pretrained_adapter_weights: Optional[str] = _pretrained()
    postprocessor: AdapterPostprocessorConfig = _postprocessor()
