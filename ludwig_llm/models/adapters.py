"""PEFT adapters: build configs from our adapter sections, attach, reload and merge them."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
from typing import Sequence

import torch
from peft import PeftConfig, PeftModel, PromptLearningConfig, get_peft_model, set_peft_model_state_dict
from peft.tuners.lora import initialize_lora_eva_weights
from peft.tuners.lora.config import CordaConfig, EvaConfig
from peft.utils import load_peft_weights
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM

from ludwig_llm.data.tokenize import PaddingCollator
from ludwig_llm.errors import UserError
from ludwig_llm.models.corda import gather_covariance, is_corda
from ludwig_llm.models.initial_adapter import changes_base_weights, keep_initial_adapter
from ludwig_llm.models.loader import hf_token, is_quantized
from ludwig_llm.schema.registry import adapter_registry, load_implementation

# Set by us, never by the user.
_RESERVED_FIELDS = {"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision"}


def adapter_type_name(adapter_type: str) -> str:
    """The registered name of an adapter type given in any case; the same as peft's PeftType, lower-cased."""
    normalized = str(adapter_type).strip().lower()
    if normalized not in adapter_registry:
        raise UserError(f"Unknown adapter type {adapter_type!r}; valid types: {', '.join(map(str, adapter_registry))}.")
    return normalized


def _rename_params(schema, params: dict) -> dict:
    renamed = {}
    for key, value in params.items():
        target = schema.peft_field_names.get(key, key)
        if target in renamed:
            raise UserError(f"adapter parameters {key!r} and {target!r} mean the same thing; give only one.")
        renamed[target] = value
    return renamed


def build_peft_config(adapter_type: str, params: dict | None):
    """A peft config for a causal LM from our adapter type and parameters."""
    schema = adapter_registry.get(adapter_type_name(adapter_type))  # names the peft config class and the renames
    config_class = load_implementation(schema)
    kwargs = _rename_params(schema, dict(params or {}))

    accepted = {field.name for field in dataclasses.fields(config_class)} - _RESERVED_FIELDS
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UserError(
            f"Unknown parameter(s) for adapter {adapter_type!r}: {', '.join(unknown)}. "
            f"Valid: {', '.join(sorted(accepted | set(schema.peft_field_names)))}."
        )
    if isinstance(kwargs.get("eva_config"), dict):
        kwargs["eva_config"] = EvaConfig(**kwargs["eva_config"])
    if isinstance(kwargs.get("corda_config"), dict):
        kwargs["corda_config"] = CordaConfig(**kwargs["corda_config"])
    if kwargs.get("init_lora_weights") == "loftq" and not torch.cuda.is_available():
        raise UserError("adapter.init_lora_weights: 'loftq' runs on a GPU (peft quantizes the weights with bitsandbytes "
                        "on CUDA) and this machine has none; use 'pissa' or true.")
    try:
        return config_class(task_type="CAUSAL_LM", **kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"Invalid parameters for adapter {adapter_type!r}: {e}") from e


def initialize_from_training_rows(model, rows, pad_token_id: int, batch_size: int, device) -> None:
    """EVA (`init_lora_weights: eva`): one calibration pass over the training rows sets LoRA's A matrices to the top
    singular vectors of each layer's inputs and moves rank to the layers that need it. A no-op for other inits.

    Every worker runs it on all the rows, so all start from the same adapter without gathering inputs."""
    config = getattr(model, "active_peft_config", None)
    if getattr(config, "init_lora_weights", None) != "eva":
        return
    collate = PaddingCollator(pad_token_id, padding_side="right")

    def on_device(examples):
        return {key: value.to(device) for key, value in collate(examples).items()}

    batches = DataLoader(list(rows), batch_size=batch_size, shuffle=False, collate_fn=on_device)
    initialize_lora_eva_weights(model, dataloader=batches, gather_distributed_inputs=False, show_progress_bar=False)


def adds_virtual_tokens(adapter_type: str | None) -> bool:
    """True for prompt-learning adapter types (prefix, prompt, p-tuning): they add virtual tokens instead of
    changing weights, so there is nothing to merge into the base model."""
    return adapter_type in adapter_registry and issubclass(load_implementation(adapter_registry.get(adapter_type)),
                                                           PromptLearningConfig)


def saved_adapter_type(adapter_dir: str) -> str | None:
    """Our adapter type name for a saved peft adapter directory, if it can be read locally."""
    config_file = os.path.join(adapter_dir, "adapter_config.json")
    if not os.path.isfile(config_file):
        return None
    with open(config_file, encoding="utf-8") as f:
        return str(json.load(f).get("peft_type", "")).lower() or None


def apply_adapter(
    model,
    adapter_type: str | None,
    params: dict | None,
    pretrained_adapter_weights: str | None = None,
    is_trainable: bool = True,
    calibration_rows: Sequence[dict] | None = None,
):
    """Wrap ``model`` in a ``PeftModel``: a new adapter, or saved adapter weights.

    ``calibration_rows``: tokenized training rows for CorDA (`init_lora_weights: corda`), run through ``model`` before it is wrapped.
    With ``pretrained_adapter_weights`` (a directory written by
    ``save_pretrained`` or a Hub id) the saved adapter config is used and
    ``params`` is ignored; ``adapter_type``, if given, must match it.
    A quantized model should go through ``loader.prepare_for_kbit_training`` first.
    """
    if pretrained_adapter_weights:
        pretrained_adapter_weights = os.path.expanduser(pretrained_adapter_weights)
        _check_saved_adapter(pretrained_adapter_weights, adapter_type)
        if is_trainable and _is_prompt_learning(pretrained_adapter_weights):
            return _load_trainable_prompt_learning_adapter(model, pretrained_adapter_weights)
        peft_model = PeftModel.from_pretrained(
            model, pretrained_adapter_weights, is_trainable=is_trainable, token=hf_token()
        )
    elif adapter_type is None:
        raise UserError("An adapter type is needed to create a new adapter.")
    else:
        peft_config = build_peft_config(adapter_type, params)
        if is_corda(peft_config):
            gather_covariance(model, peft_config, calibration_rows)
        peft_model = get_peft_model(model, peft_config)
        if changes_base_weights(peft_config):
            keep_initial_adapter(peft_model)  # so the saved adapter fits the unchanged base (models/initial_adapter.py)
    if not is_trainable:
        _freeze(peft_model)
    return peft_model


def _freeze(peft_model) -> None:
    # peft leaves prompt-learning embeddings trainable even when loaded for inference.
    peft_model.eval()
    for parameter in peft_model.parameters():
        parameter.requires_grad = False


def _is_prompt_learning(adapter_path: str) -> bool:
    return PeftConfig.from_pretrained(adapter_path, token=hf_token()).is_prompt_learning


def _load_trainable_prompt_learning_adapter(model, adapter_path: str):
    # peft's PeftModel.from_pretrained refuses is_trainable=True for prompt
    # learning adapters, so continuing their training means building a fresh
    # adapter from the saved config and loading the saved weights into it.
    config = PeftConfig.from_pretrained(adapter_path, token=hf_token())
    config.inference_mode = False
    peft_model = get_peft_model(model, config)
    set_peft_model_state_dict(peft_model, load_peft_weights(adapter_path, token=hf_token()))
    return peft_model


def _check_saved_adapter(adapter_path: str, adapter_type: str | None) -> None:
    looks_local = adapter_path.startswith(("/", "./", "../")) or os.path.exists(adapter_path)
    if not looks_local:
        return  # a Hub id: peft reports problems itself
    if not os.path.isfile(os.path.join(adapter_path, "adapter_config.json")):
        raise UserError(f"pretrained_adapter_weights {adapter_path} is not a saved adapter (no adapter_config.json).")
    saved_type = saved_adapter_type(adapter_path)
    if adapter_type is not None and saved_type and adapter_type_name(adapter_type) != saved_type:
        raise UserError(
            f"The adapter in {adapter_path} is of type {saved_type!r}, but the config asks for {adapter_type!r}."
        )


def merge_and_save(
    peft_model,
    out_dir: str,
    quantized: bool = False,
    *,
    tokenizer=None,
    trust_remote_code: bool = False,
) -> str:
    """Merge the adapter into its base model and save a plain safetensors model to ``out_dir``.

    A quantized base is not merged into: its base model is reloaded
    unquantized in float32 and the adapter merged into that, so the result has
    full-precision weights and ``peft_model`` is left untouched. Otherwise the
    merge happens in place (no second copy of the model in memory):
    ``peft_model`` still computes the same outputs afterwards, but its adapter
    layers are gone, so save the adapter *before* merging.
    """
    peft_config = peft_model.peft_config[peft_model.active_adapter]
    adapter_type = str(peft_config.peft_type.value).lower()
    if peft_config.is_prompt_learning:
        raise UserError(
            f"A {adapter_type} adapter adds virtual tokens and cannot be merged into the model weights; "
            "save the adapter itself instead."
        )
    if quantized or is_quantized(peft_model.get_base_model()):
        merged = _merge_into_full_precision_base(peft_model, trust_remote_code)
    else:
        merged = peft_model.merge_and_unload()
    # Training turns the KV cache off; the merged model is for inference.
    merged.config.use_cache = True
    merged.save_pretrained(out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir


def _merge_into_full_precision_base(peft_model, trust_remote_code: bool):
    adapter_name = peft_model.active_adapter
    base = peft_model.get_base_model()
    base_path = peft_model.peft_config[adapter_name].base_model_name_or_path or base.config.name_or_path
    # The quantized model's config already holds the run's changes (e.g. RoPE
    # scaling); only its quantization settings must go.
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    full_base = AutoModelForCausalLM.from_pretrained(
        base_path, config=config, dtype=torch.float32, token=hf_token(), trust_remote_code=trust_remote_code
    )
    with tempfile.TemporaryDirectory(prefix="ludwig_llm_adapter_") as adapter_dir:
        peft_model.save_pretrained(adapter_dir, selected_adapters=[adapter_name])
        saved_dir = os.path.join(adapter_dir, adapter_name) if adapter_name != "default" else adapter_dir
        merged = PeftModel.from_pretrained(full_base, saved_dir).merge_and_unload()
    return merged
