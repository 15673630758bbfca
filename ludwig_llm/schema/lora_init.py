"""LoRA's initializations: the `init_lora_weights` field and the settings sections of the inits that take some
(LoftQ, EVA, CorDA), used by the LoRA adapter section."""

from __future__ import annotations

import re
from typing import Any, Dict

import marshmallow

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option

# init_lora_weights strings that peft runs from the weights alone; "pissa_niter_<n>" is PiSSA by fast randomized SVD.
# eva and corda are data-driven: a calibration pass over the training rows (corda's through the base model, before
# the adapter is attached) runs when fine-tuning starts.
LORA_INITS = ("gaussian", "pissa", "olora", "orthogonal", "loftq", "eva", "corda")


class InitLoraWeights(marshmallow.fields.Field):
    """``init_lora_weights``: a boolean, or the name of one of peft's initializations."""

    doc_type = "boolean or string"

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or value in LORA_INITS or (isinstance(value, str) and re.fullmatch(r"pissa_niter_\d+", value)):
            return value
        raise marshmallow.ValidationError(
            f"must be true, false, one of {', '.join(map(repr, LORA_INITS))}, or 'pissa_niter_<n>'."
        )

    def json_schema(self) -> Dict[str, Any]:
        return {"anyOf": [{"type": "boolean"}, {"enum": list(LORA_INITS)}, {"type": "string", "pattern": r"^pissa_niter_\d+$"}]}


@config_class
class LoftQSettings(BaseConfig):
    """LoftQ: quantizes the base weights and starts LoRA at the quantization error, a better start than zero."""

    title = "LoftQ"
    loftq_bits: int = option(4, "Bits of the quantized base weights that LoftQ compensates for.", choices=[4, 8], impact=Impact.MEDIUM)
    loftq_iter: int = option(1, "Alternating quantize/SVD iterations; more fit the error better and take longer.", min=1, impact=Impact.LOW)


@config_class
class EvaSettings(BaseConfig):
    """EVA (explained variance adaptation): LoRA's A matrices start at the top singular vectors of each layer's inputs
    on the training rows, and the rank budget moves to the layers whose inputs need it."""

    title = "EVA"
    rho: float = option(2.0, "How far a layer's rank may grow: up to `rho * r`; 1 keeps every layer at `r`.", min=1.0, impact=Impact.MEDIUM)
    tau: float = option(0.99, "Stop the calibration pass once every layer's singular vectors agree this much between batches.",
                        min=0.0, max=1.0, impact=Impact.LOW)
    use_label_mask: bool = option(True, "Use only the positions that carry loss (the target tokens) in the calibration.", impact=Impact.LOW)
    whiten: bool = option(False, "Whiten the singular vectors (scale by their singular values).", impact=Impact.LOW)
    adjust_scaling_factors: bool = option(True, "Keep each layer's `alpha / r` scale when its rank changes.", impact=Impact.LOW)


@config_class
class CordaSettings(BaseConfig):
    """CorDA (context-oriented decomposition adaptation): the covariance of each adapted layer's inputs on the training
    rows, gathered by forwards through the base model before the adapter is attached, orients an SVD of the weights;
    LoRA starts from one end of it and the base weights keep the rest. peft's `cache_file` and `covariance_file` are not
    offered: peft reads them back with `torch.load`, which can run code from a swapped file (the calibration is cheap to
    redo instead)."""

    title = "CorDA"
    corda_method: str = option("ipm", "`ipm` (instruction-previewed): LoRA starts from the directions the training rows use "
                               "most, which converges faster; `kpm` (knowledge-preserved): LoRA starts from the least-used "
                               "directions, which keeps more of the base model's knowledge.", choices=["ipm", "kpm"],
                               impact=Impact.MEDIUM)
    calibration_rows: int = option(64, "Training rows (the first ones) run one at a time through the base model to gather "
                                   "the covariance; more rows, and longer ones, make a better-conditioned covariance.",
                                   min=1, impact=Impact.LOW)
    use_float16_for_covariance: bool = option(False, "Keep the covariance in float16: half the memory, less precise.", impact=Impact.LOW)
    verbose: bool = option(False, "Print the progress of the CorDA decomposition.", impact=Impact.LOW)

    def peft_settings(self) -> dict:
        """The fields of peft's CordaConfig (calibration_rows is ours: how much data the calibration sees)."""
        settings = self.to_dict()
        settings.pop("calibration_rows")
        return settings
