"""Rules that involve more than one field. Each check yields the problems it finds, with their config paths.

A new rule is one function decorated with ``@cross_field_check``.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Callable, Iterator, List

import marshmallow

from ludwig_llm.errors import ConfigIssue
from ludwig_llm.schema import template as prompt_template

CHECKS: List[Callable] = []


def cross_field_check(function: Callable) -> Callable:
    CHECKS.append(function)
    return function


def run_checks(config) -> List[ConfigIssue]:
    """Every rule's problems. ``config`` may be a PartialConfig: a rule that reads an invalid section is skipped."""
    issues: List[ConfigIssue] = []
    for check in CHECKS:
        try:
            issues.extend(check(config))
        except InvalidSection:
            pass
    return issues


class InvalidSection(Exception):
    """Raised when a rule reads a section that failed its own validation (its errors are reported already)."""


class _Invalid:
    """Stands for a section that failed validation: any use of it ends the rule that reads it."""

    def __getattr__(self, name):
        raise InvalidSection(name)

    def __len__(self):
        raise InvalidSection("len")

    def __iter__(self):
        raise InvalidSection("iter")

    def __getitem__(self, key):
        raise InvalidSection(key)


def partial_config(config_class, data: dict):
    """The config's top-level sections that are valid on their own (defaults where absent); the others are
    `_Invalid`. Used when the config as a whole fails, so that rules over its valid sections still report."""
    schema = config_class.Schema()
    defaults = {f.name: f for f in dataclasses.fields(config_class)}
    sections = {}
    for name, field in schema.fields.items():
        key = field.data_key or name
        default = defaults[name]
        try:
            if key in data:
                sections[name] = field.deserialize(data[key], key, data)
            elif default.default is not dataclasses.MISSING:
                sections[name] = default.default
            elif default.default_factory is not dataclasses.MISSING:
                sections[name] = default.default_factory()
            else:  # required and missing
                sections[name] = _Invalid()
        except marshmallow.ValidationError:
            sections[name] = _Invalid()
    return SimpleNamespace(**sections)


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
    allowed = {"finetune": ["text", "category"], "none": ["text", "category"]}.get(config.trainer.type, ["text"])
    for i, feature in enumerate(config.output_features):
        if feature.type not in allowed:
            yield ConfigIssue(
                f"output_features[{i}].type",
                f"trainer '{config.trainer.type}' needs an output feature of type {' or '.join(map(repr, allowed))}; "
                "category outputs are for in-context learning (trainer.type: none) and fine-tuning (finetune).",
                feature.type,
            )


@cross_field_check
def category_labels_agree(config) -> Iterator[ConfigIssue]:
    for i, feature in enumerate(config.output_features):
        if feature.type != "category":
            continue
        match = getattr(feature.decoder, "match", None)
        if feature.vocab and match and sorted(match) != sorted(feature.vocab):
            yield ConfigIssue(f"output_features[{i}].decoder.match", f"its labels {sorted(match)} differ from vocab "
                              f"{sorted(feature.vocab)}; give the label set once (vocab, or the keys of match).")
        fallback, labels = feature.preprocessing.fallback_label, feature.label_set()
        if fallback is not None and labels is not None and fallback not in labels:
            source = "vocab" if feature.vocab else "the keys of decoder.match"
            yield ConfigIssue(f"output_features[{i}].preprocessing.fallback_label",
                              f"must be one of the labels ({source}: {', '.join(map(repr, labels))}).", fallback)


@cross_field_check
def classifier_head_is_trained(config) -> Iterator[ConfigIssue]:
    for i, feature in enumerate(config.output_features):
        if feature.type != "category" or not feature.uses_classifier_head():
            continue
        path = f"output_features[{i}].decoder.type"
        if config.trainer.type != "finetune":
            yield ConfigIssue(path, f"a classification head is trained from scratch, so it needs trainer.type: finetune "
                              f"(got '{config.trainer.type}'); for in-context learning leave the decoder out (label scoring).",
                              "classifier")
        if getattr(config.trainer, "packing", False):
            yield ConfigIssue("trainer.packing", "a classification head reads each row's last token, which packed rows "
                              "do not keep apart; set packing to false.", True)
        strategy = config.backend.trainer.strategy.type if config.backend.type == "ray" else "ddp"
        if strategy != "ddp":
            yield ConfigIssue("backend.trainer.strategy.type", f"a classification head trains beside the model, which "
                              f"'{strategy}' would have to shard with it; use 'ddp', or leave the decoder out (label scoring).",
                              strategy)


PREFERENCE_TYPES = ("dpo", "orpo", "kto", "grpo")  # trainers on the finetune loop with a loss of their own
TRAINING_TYPES = ("finetune",) + PREFERENCE_TYPES  # trainer types that update weights with the finetune loop


@cross_field_check
def quantized_finetune_needs_adapter(config) -> Iterator[ConfigIssue]:
    if config.quantization is not None and config.trainer.type in TRAINING_TYPES and config.adapter is None:
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
def merge_needs_a_mergeable_adapter(config) -> Iterator[ConfigIssue]:
    adapter = config.adapter
    if adapter is not None and not adapter.mergeable and adapter.postprocessor.merge_adapter_into_base_model:
        yield ConfigIssue(
            "adapter.postprocessor.merge_adapter_into_base_model",
            f"'{adapter.type}' adds learned virtual tokens instead of changing weights, so there is nothing to merge "
            "into the base model; set it to false (the adapter is saved beside the base model).",
            True,
        )


@cross_field_check
def loftq_quantizes_by_itself(config) -> Iterator[ConfigIssue]:
    adapter = config.adapter
    if adapter is not None and getattr(adapter, "init_lora_weights", None) == "loftq" and config.quantization is not None:
        yield ConfigIssue(
            "adapter.init_lora_weights",
            "LoftQ starts from the full-precision weights and quantizes them itself (adapter.loftq_config.loftq_bits); "
            "remove 'quantization', or use another init with QLoRA.",
            "loftq",
        )


@cross_field_check
def corda_fits(config) -> Iterator[ConfigIssue]:
    adapter = config.adapter
    if adapter is None or getattr(adapter, "init_lora_weights", None) != "corda":
        return
    if config.quantization is not None:
        yield ConfigIssue("adapter.init_lora_weights", "CorDA decomposes the full-precision weights; remove 'quantization', "
                          "or use another init with QLoRA.", "corda")
    if config.backend.type == "ray" and config.backend.trainer.num_workers > 1:
        yield ConfigIssue("adapter.init_lora_weights", "CorDA's calibration pass is not run with several Ray workers; use "
                          "backend.trainer.num_workers: 1, or 'eva' (data-driven too, runs in every worker).", "corda")


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
        if config.trainer.type == "grpo":
            yield ConfigIssue(f"{path}.type", f"trainer 'grpo' samples completions with generate, and the workers' "
                              f"completions differ in length, so '{strategy.type}' (whose every forward pass is "
                              "collective) would wait forever; use 'ddp'.", strategy.type)
        elif config.trainer.type in ("dpo", "kto") and config.adapter is None and strategy.type == "deepspeed":
            yield ConfigIssue(f"{path}.type", f"trainer '{config.trainer.type}' without an adapter scores with a frozen copy "
                              "of the base model, which 'deepspeed' does not shard (every worker would hold it whole); add an "
                              "adapter (the reference is then the policy with its adapter off), or use 'fsdp' (which "
                              "shards the copy too) or 'ddp'.", strategy.type)
        if config.trainer.type in TRAINING_TYPES and config.trainer.optimizer.type != "adamw" and strategy.type == "deepspeed":
            yield ConfigIssue("trainer.optimizer.type", "strategy 'deepspeed' runs with optimizer 'adamw'.", config.trainer.optimizer.type)
        if config.trainer.type in TRAINING_TYPES and config.trainer.optimizer.type.endswith("_8bit") and strategy.type == "fsdp":
            yield ConfigIssue("trainer.optimizer.type", "bitsandbytes' 8-bit optimizers do not take FSDP's sharded "
                              "parameters; use 'adamw' or 'sgd', or strategy 'ddp'.", config.trainer.optimizer.type)
    for name in ("cpu_offload", "offload_optimizer", "offload_parameters"):
        if getattr(strategy, name, False) and not workers.use_gpu:
            yield ConfigIssue(f"{path}.{name}", "offloading to CPU memory is for GPU workers: set backend.trainer.use_gpu: "
                              "true, or remove it (CPU workers already keep everything in CPU memory).", True)
    if strategy.type == "deepspeed" and strategy.offload_parameters and strategy.zero_stage != 3:
        yield ConfigIssue(f"{path}.offload_parameters", f"only ZeRO stage 3 shards parameters, so only it can offload them "
                          f"(zero_stage is {strategy.zero_stage}).", True)


@cross_field_check
def batch_size_search_fits(config) -> Iterator[ConfigIssue]:
    trainer = config.trainer
    for name in ("batch_size", "eval_batch_size"):
        if getattr(trainer, name, None) != "auto":
            continue
        if config.backend.type == "ray" and config.backend.trainer.num_workers > 1:
            yield ConfigIssue(f"trainer.{name}", "the batch size search runs in one worker; with several Ray workers give a "
                              "number (each worker takes its share of it).", "auto")
        if name == "batch_size" and config.adapter is not None and config.adapter.type == "adalora" and config.adapter.total_step is None:
            yield ConfigIssue(f"trainer.{name}", "AdaLoRA's rank schedule needs the run's steps when the adapter is built, before "
                              "the search: set adapter.total_step, or give a number.", "auto")


@cross_field_check
def packing_needs_real_tokens_only(config) -> Iterator[ConfigIssue]:
    adapter, trainer = config.adapter, config.trainer
    if not getattr(trainer, "packing", False):
        return
    if adapter is not None and not adapter.mergeable:  # the prompt-learning adapters, which add virtual tokens
        yield ConfigIssue(
            "trainer.packing",
            f"'{adapter.type}' puts learned virtual tokens before every row, which rows packed into one sequence "
            "cannot each have; set packing to false, or use another adapter (e.g. lora).",
            True,
        )
    if trainer.type in PREFERENCE_TYPES:
        yield ConfigIssue("trainer.packing", f"the '{trainer.type}' trainer scores each row's responses as whole "
                          "sequences and does not pack them; set packing to false.", True)
