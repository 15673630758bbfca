"""Model parameters section: changes to the base model's own configuration (RoPE scaling, NEFTune, remote code)."""

from __future__ import annotations

from typing import Any, Optional

import marshmallow

from ludwig_llm.schema import ludwig
from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option, typed_union
from ludwig_llm.schema.registry import rope_scaling_registry


def _factor(default: float):
    return option(
        default, "Scaling factor: how many times longer than the pretrained context the model should handle. Must be above 1.",
        min=1.0, min_inclusive=False, impact=Impact.HIGH, example=2.0,
    )


def _original_max_positions(default: Optional[int], why: str):
    return option(default, f"Context length the model was pretrained with. {why}", min=1, impact=Impact.MEDIUM)


class BaseRopeScalingConfig(BaseConfig):
    """Common to every RoPE scaling type."""

    def rope_params(self) -> dict:
        """The transformers form: ``rope_type`` plus this type's fields; unset ones are left to the model."""
        params = {k: v for k, v in self.to_dict().items() if v is not None}
        params["rope_type"] = params.pop("type")
        return params


@rope_scaling_registry.register("linear")
@config_class
class LinearRopeScalingConfig(BaseRopeScalingConfig):
    """Position interpolation: positions are divided by `factor`. Simple; needs fine-tuning at the new length."""

    title = "Linear"
    type: str = option("linear", "RoPE scaling type.", choices=["linear"], impact=Impact.HIGH)
    factor: float = _factor(2.0)


@rope_scaling_registry.register("dynamic")
@config_class
class DynamicRopeScalingConfig(BaseRopeScalingConfig):
    """Dynamic NTK scaling: the RoPE base grows with the sequence length; works without fine-tuning."""

    title = "Dynamic NTK"
    type: str = option("dynamic", "RoPE scaling type.", choices=["dynamic"], impact=Impact.HIGH)
    factor: float = _factor(2.0)
    original_max_position_embeddings: Optional[int] = _original_max_positions(None, "Null reads it from the model config.")


@rope_scaling_registry.register("yarn")
@config_class
class YarnRopeScalingConfig(BaseRopeScalingConfig):
    """YaRN: interpolates low frequencies, keeps high ones, and rescales attention; strong long-context results."""

    title = "YaRN"
    type: str = option("yarn", "RoPE scaling type.", choices=["yarn"], impact=Impact.HIGH)
    factor: float = _factor(4.0)
    original_max_position_embeddings: Optional[int] = _original_max_positions(None, "Null reads it from the model config.")
    beta_fast: float = option(32.0, "Rotations above which frequencies are left unscaled (extrapolated).", min=0.0, min_inclusive=False, impact=Impact.LOW)
    beta_slow: float = option(1.0, "Rotations below which frequencies are fully interpolated.", min=0.0, min_inclusive=False, impact=Impact.LOW)
    attention_factor: Optional[float] = option(None, "Attention temperature scaling; null uses YaRN's formula from `factor`.", min=0.0, min_inclusive=False, impact=Impact.LOW)


@rope_scaling_registry.register("llama3")
@config_class
class Llama3RopeScalingConfig(BaseRopeScalingConfig):
    """Llama 3.1's frequency-dependent scaling: low frequencies scaled by `factor`, high ones kept, a smooth band between."""

    title = "Llama 3"
    type: str = option("llama3", "RoPE scaling type.", choices=["llama3"], impact=Impact.HIGH)
    factor: float = _factor(8.0)
    low_freq_factor: float = option(1.0, "Wavelength divisor below which frequencies are fully scaled.", min=0.0, min_inclusive=False, impact=Impact.LOW)
    high_freq_factor: float = option(4.0, "Wavelength divisor above which frequencies are kept.", min=0.0, min_inclusive=False, impact=Impact.LOW)
    original_max_position_embeddings: int = _original_max_positions(8192, "Llama 3 used 8192.")


@config_class
class ModelParametersConfig(BaseConfig):
    """Overrides applied to the base model's configuration before it is loaded."""

    title = "Model parameters"
    rope_scaling: Optional[Any] = typed_union(
        rope_scaling_registry, None,
        "Rotary position embedding scaling, to run the model on longer contexts than it was trained on. Null keeps the model's own. "
        "`rope_type` (transformers' and Ludwig's name) is read as `type`.",
        impact=Impact.MEDIUM,
    )
    neftune_noise_alpha: float = option(
        0.0, "NEFTune: add uniform noise of this scale to the input embeddings while fine-tuning (often 5); 0 turns it off.",
        min=0.0, impact=Impact.MEDIUM,
    )
    trust_remote_code: bool = option(
        False,
        "Allow a model whose repository ships its own Python code to run that code. Off by default: that code "
        "runs with your permissions. Turn on only for repositories you trust.",
        impact=Impact.LOW,
    )

    @marshmallow.pre_load
    def _ludwig_rope_type(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("rope_scaling"), dict):
            data = {**data, "rope_scaling": ludwig.rename(data["rope_scaling"], "rope_type", "type", within="rope_scaling")}
        return data
