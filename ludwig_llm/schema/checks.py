"""Rules that involve more than one field. Each check yields the problems it finds, with their config paths.

A new rule is one function decorated with ``@cross_field_check``.
"""

from __future__ import annotations

from typing import Callable, Iterator, List

from ludwig_llm.errors import ConfigIssue
from ludwig_llm.schema import template as prompt_template

CHECKS: List[Callable] = []


def cross_field_check(function: Callable) -> Callable:
    CHECKS.append(function)
    return function


def run_checks(config) -> List[ConfigIssue]:
    return [issue for check in CHECKS for issue in check(config)]


@cross_field_check
def one_text_input_feature(config) -> Iterator[ConfigIssue]:
    if len(config.input_features) != 1:
        yield ConfigIssue("input_features", f"an LLM takes exactly one input feature, got {len(config.input_features)}.")
    for i, feature in enumerate(config.input_features):
        if feature.type == "text":
            continue
        if not getattr(type(feature), "implementation", None):
            yield ConfigIssue(f"input_features[{i}].type", "an LLM's input feature must be of type 'text' or a type with its "
                              "own data implementation (a conversation or a dataset preset).", feature.type)
        elif config.prompt.retrieval.type is not None:
            yield ConfigIssue("prompt.retrieval.type", f"retrieval inserts examples into a text prompt; it does not work with a "
                              f"'{feature.type}' input feature.", config.prompt.retrieval.type)


@cross_field_check
def one_output_feature(config) -> Iterator[ConfigIssue]:
    if len(config.output_features) != 1:
        yield ConfigIssue("output_features", f"an LLM has exactly one output feature, got {len(config.output_features)}.")


@cross_field_check
def output_type_fits_trainer(config) -> Iterator[ConfigIssue]:
    allowed = {"finetune": ["text"], "none": ["text", "category"]}.get(config.trainer.type)
    for i, feature in enumerate(config.output_features):
        if allowed is not None and feature.type not in allowed:
            yield ConfigIssue(
                f"output_features[{i}].type",
                f"trainer '{config.trainer.type}' needs an output feature of type {' or '.join(map(repr, allowed))}; "
                "category outputs are for in-context learning (trainer.type: none).",
                feature.type,
            )


@cross_field_check
def quantized_finetune_needs_adapter(config) -> Iterator[ConfigIssue]:
    if config.quantization is not None and config.trainer.type == "finetune" and config.adapter is None:
        yield ConfigIssue(
            "quantization",
            "quantized weights cannot be trained directly: fine-tuning a quantized model needs an adapter "
            "(e.g. 'adapter: lora' for QLoRA), or remove 'quantization'.",
        )


@cross_field_check
def rope_factor_above_one(config) -> Iterator[ConfigIssue]:
    rope = config.model_parameters.rope_scaling
    if rope is not None and not rope.factor > 1:
        yield ConfigIssue("model_parameters.rope_scaling.factor", "RoPE scaling factor must be above 1.", rope.factor)


@cross_field_check
def prompt_template_is_safe_and_complete(config) -> Iterator[ConfigIssue]:
    prompt = config.prompt
    if prompt.template is None:
        return
    try:
        names = prompt_template.placeholders(prompt.template)
    except prompt_template.TemplateError as error:
        yield ConfigIssue("prompt.template", str(error))
        return
    output = config.output_features[0] if config.output_features else None
    if output is not None and output.column_name() in names:
        yield ConfigIssue(
            "prompt.template",
            f"the template names the output feature's column '{{{output.column_name()}}}': the answer would leak into the prompt.",
        )
    if prompt.task is not None and prompt_template.TASK not in names:
        yield ConfigIssue("prompt.template", "'prompt.task' is set, so the template must contain '{__task__}'.")
    if prompt.retrieval.type is not None and prompt_template.CONTEXT not in names:
        yield ConfigIssue("prompt.template", "retrieval is on, so the template must contain '{__context__}'.")
    if prompt.task is None and prompt_template.TASK in names:
        yield ConfigIssue("prompt.task", "the template uses '{__task__}', so 'prompt.task' must be set.")
    if prompt.retrieval.type is None and prompt_template.CONTEXT in names:
        yield ConfigIssue(
            "prompt.retrieval.type",
            "the template uses '{__context__}', which is filled by retrieval: set prompt.retrieval.type (random or semantic) and k.",
        )


@cross_field_check
def retrieval_needs_k(config) -> Iterator[ConfigIssue]:
    retrieval = config.prompt.retrieval
    if retrieval.type is not None and retrieval.k < 1:
        yield ConfigIssue("prompt.retrieval.k", f"retrieval type '{retrieval.type}' needs k of at least 1.", retrieval.k)


@cross_field_check
def adapter_without_training_needs_weights(config) -> Iterator[ConfigIssue]:
    if config.adapter is not None and config.trainer.type == "none" and not config.adapter.pretrained_adapter_weights:
        yield ConfigIssue(
            "adapter.pretrained_adapter_weights",
            "with trainer 'none' nothing trains the adapter, so it needs saved weights to load "
            "(set pretrained_adapter_weights, or remove 'adapter').",
        )


@cross_field_check
def no_merge_into_4bit(config) -> Iterator[ConfigIssue]:
    adapter, quantization = config.adapter, config.quantization
    if adapter is not None and quantization is not None and quantization.bits == 4 and adapter.postprocessor.merge_adapter_into_base_model:
        yield ConfigIssue(
            "adapter.postprocessor.merge_adapter_into_base_model",
            "merging an adapter into a 4-bit base would round the merged weights to 4 bits and lose the training; "
            "keep the adapter separate, or train without 4-bit quantization.",
            True,
        )


@cross_field_check
def generation_lengths_agree(config) -> Iterator[ConfigIssue]:
    generation = config.generation
    if generation.min_new_tokens > generation.max_new_tokens:
        yield ConfigIssue(
            "generation.min_new_tokens",
            f"must not exceed generation.max_new_tokens ({generation.max_new_tokens}).",
            generation.min_new_tokens,
        )


@cross_field_check
def sharded_strategy_fits(config) -> Iterator[ConfigIssue]:
    if config.backend.type != "ray":
        return
    workers = config.backend.trainer
    strategy, path = workers.strategy, "backend.trainer.strategy"
    if strategy.type != "ddp":
        if config.quantization is not None:
            yield ConfigIssue(f"{path}.type", f"'{strategy.type}' shards trainable weights, and quantized weights cannot be "
                              "sharded here; use 'ddp' (each worker holds the quantized model) or remove 'quantization'.", strategy.type)
        if config.adapter is not None and config.adapter.type == "adalora":
            yield ConfigIssue(f"{path}.type", f"AdaLoRA reallocates ranks from whole gradients, which '{strategy.type}' "
                              "splits over the workers; use 'ddp', or another adapter.", strategy.type)
        if config.trainer.type == "finetune" and config.trainer.optimizer.type != "adamw" and strategy.type == "deepspeed":
            yield ConfigIssue("trainer.optimizer.type", "strategy 'deepspeed' runs with optimizer 'adamw'.", config.trainer.optimizer.type)
        if config.trainer.type == "finetune" and config.trainer.optimizer.type.endswith("_8bit") and strategy.type == "fsdp":
            yield ConfigIssue("trainer.optimizer.type", "bitsandbytes' 8-bit optimizers do not take FSDP's sharded "
                              "parameters; use 'adamw' or 'sgd', or strategy 'ddp'.", config.trainer.optimizer.type)
    for name in ("cpu_offload", "offload_optimizer", "offload_parameters"):
        if getattr(strategy, name, False) and not workers.use_gpu:
            yield ConfigIssue(f"{path}.{name}", "offloading to CPU memory is for GPU workers: set backend.trainer.use_gpu: "
                              "true, or remove it (CPU workers already keep everything in CPU memory).", True)
    if strategy.type == "deepspeed" and strategy.offload_parameters and strategy.zero_stage != 3:
        yield ConfigIssue(f"{path}.offload_parameters", f"only ZeRO stage 3 shards parameters, so only it can offload them "
                          f"(zero_stage is {strategy.zero_stage}).", True)
