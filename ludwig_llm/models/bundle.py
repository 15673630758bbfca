"""The `model/` directory of a run: what is saved after training and what predict/evaluate load.

Layout: our resolved config (`ludwig_llm_config.yaml`), a manifest (`ludwig_llm_model.json`),
the tokenizer, and the weights in Hugging Face / peft format as safetensors: an adapter
(`adapter_config.json`, loadable with `peft.AutoPeftModelForCausalLM`), a full model, or none
when the run used the base model unchanged (trainer `none`); `merged/` holds the merged model when
the adapter's merge switch is on, and `retrieval/` the few-shot index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional

import yaml

from ludwig_llm.data.retrieval import RETRIEVAL_DIR, load_retriever
from ludwig_llm.errors import UserError
from ludwig_llm.models.adapters import merge_and_save
from ludwig_llm.models.build import build_llm
from ludwig_llm.models.initial_adapter import initial_adapter_path
from ludwig_llm.models.classifier_head import attach_saved_head, head_set_aside, save_head
from ludwig_llm.models.integrity import verify_model_files, weight_checksums
from ludwig_llm.models.loader import load_tokenizer
from ludwig_llm.models.resolve import resolve_base_model
from ludwig_llm.models.card import write_model_card
from ludwig_llm.results import read_json, write_json, write_text_atomically
from ludwig_llm.schema import load_config

CONFIG_FILE = "ludwig_llm_config.yaml"
MANIFEST_FILE = "ludwig_llm_model.json"
MERGED_DIR = "merged"
FORMAT_VERSION = 1
# Manifest `extra` key: {label: count} of the training split, in order of first appearance (category outputs).
TRAIN_LABEL_COUNTS = "train_label_counts"


@dataclass
class Manifest:
    weights: str  # "adapter", "full" or "base"
    base_model: str
    labels: Optional[List[str]] = None
    has_retrieval: bool = False
    merged: bool = False
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)
    checksums: dict = field(default_factory=dict)  # {weights file: sha256}, verified at load


def save_model_directory(directory: str, *, config, model, tokenizer, base_model_path: str, weights: str,
                         labels: Optional[List[str]] = None, retriever=None, merge: bool = False,
                         quantized: bool = False, extra: Optional[dict] = None) -> None:
    """Write a model directory (see the module docstring); ``extra`` is stored in the manifest as is."""
    os.makedirs(directory, exist_ok=True)
    if model is not None and weights in ("adapter", "full"):
        unwrapped = getattr(model, "module", model)  # DDP wraps the model
        with head_set_aside(unwrapped) as head:  # a category's classification head goes in a file of its own
            initial = initial_adapter_path(unwrapped)  # PiSSA, OLoRA, CorDA: saved as a plain LoRA on the unchanged base
            unwrapped.save_pretrained(directory, **({"path_initial_model_for_weight_conversion": initial} if initial else {}))
        if head is not None:
            save_head(head, directory)
    tokenizer.save_pretrained(directory)
    if retriever is not None:
        retriever.save(os.path.join(directory, RETRIEVAL_DIR))
    write_text_atomically(os.path.join(directory, CONFIG_FILE), yaml.safe_dump(config.to_dict(), sort_keys=False))
    if merge and weights == "adapter":
        merge_and_save(getattr(model, "module", model), os.path.join(directory, MERGED_DIR), quantized=quantized, tokenizer=tokenizer)
    manifest = Manifest(weights=weights, base_model=base_model_path, labels=labels, has_retrieval=retriever is not None,
                        merged=merge and weights == "adapter", extra=dict(extra or {}), checksums=weight_checksums(directory))
    write_json(os.path.join(directory, MANIFEST_FILE), manifest.__dict__)
    write_model_card(directory, config.to_dict(), manifest.__dict__)  # replaces peft's empty template


def read_model_directory(directory: str):
    """(config, manifest) of a saved model, or a UserError saying why this is not one."""
    if not os.path.isdir(directory):
        raise UserError(f"--model_path {directory} does not exist or is not a directory.")
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        hint = " (did you mean its model/ subdirectory?)" if os.path.isfile(os.path.join(directory, "model", MANIFEST_FILE)) else ""
        raise UserError(f"--model_path {directory} is not a ludwig_llm model: it has no {MANIFEST_FILE}{hint}.")
    manifest = _read_manifest(manifest_path)
    if not os.path.isfile(os.path.join(directory, CONFIG_FILE)):
        raise UserError(f"{os.path.join(directory, CONFIG_FILE)} is missing: the model directory is incomplete; copy it again or save it again.")
    config = load_config(os.path.join(directory, CONFIG_FILE))
    return config, manifest


def _read_manifest(path: str) -> Manifest:
    try:
        data = read_json(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is corrupt (not valid JSON: {str(error).splitlines()[0]}); copy the model directory "
                        "again, or save it again (`train --resume <run>` rebuilds it from the last checkpoint).") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is corrupt: it holds {type(data).__name__}, not a manifest object.")
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{os.path.dirname(path)} was saved in model format {data.get('format_version')}; this version reads {FORMAT_VERSION}.")
    try:
        return Manifest(**data)
    except TypeError as error:
        raise UserError(f"{path} is corrupt: {error}.") from None


def load_model_directory(directory: str, padding_side: str = "left"):
    """(config, manifest, BuiltModel) ready for inference."""
    config, manifest = read_model_directory(directory)
    return config, manifest, _build_saved(directory, config, manifest, padding_side)


def _build_saved(directory: str, config, manifest: Manifest, padding_side: str):
    verify_model_files(directory, manifest.weights, manifest.checksums)
    if manifest.weights == "full":
        built = build_llm(config, for_training=False, padding_side=padding_side, base_model_path=directory)
    else:
        base = _base_model_path(config.base_model, manifest.base_model)
        adapter_path = directory if manifest.weights == "adapter" else None
        built = build_llm(config, for_training=False, padding_side=padding_side, base_model_path=base, adapter_path=adapter_path)
    if config.output_feature.type == "category" and config.output_feature.uses_classifier_head():
        attach_saved_head(built.model, directory, len(manifest.labels or []))
    return built


class LazyBuiltModel:
    """A saved model whose weights load on first use of anything but its tokenizer.

    On the Ray backend the driver only renders and tokenizes the prompts, and the prediction actors
    load the model themselves: the driver should not hold a copy it never uses.
    """

    def __init__(self, directory: str, config, padding_side: str = "left"):
        self._directory, self._padding_side = directory, padding_side
        self._built = None
        self.tokenizer = load_tokenizer(directory, trust_remote_code=config.model_parameters.trust_remote_code,
                                        padding_side=padding_side)

    @property
    def is_loaded(self) -> bool:
        return self._built is not None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._built is None:
            self._built = load_model_directory(self._directory, self._padding_side)[2]
        return getattr(self._built, name)


def _base_model_path(configured: str, saved: str) -> str:
    # Re-resolving the configured name works on another machine; the saved path is the fallback
    # for a local directory that the config named relatively.
    try:
        return resolve_base_model(configured)
    except UserError:
        if os.path.isdir(saved):
            return saved
        raise


def load_retriever_for(directory: str, config, manifest: Manifest) -> Any:
    if not manifest.has_retrieval:
        return None
    return load_retriever(os.path.join(directory, RETRIEVAL_DIR), config.prompt.retrieval)


@dataclass
class SavedModel:
    """A model directory opened for prediction: its config, manifest, model and few-shot retriever."""

    directory: str
    config: Any
    manifest: Manifest
    built: Any  # a BuiltModel, or a LazyBuiltModel that loads the weights on first use
    retriever: Any = None


def open_model_directory(directory: str, *, lazy: bool = False) -> SavedModel:
    """The saved model in `directory`; with `lazy`, only its tokenizer loads now (the weights on first use)."""
    config, manifest = read_model_directory(directory)
    built = LazyBuiltModel(directory, config) if lazy else _build_saved(directory, config, manifest, "left")
    return SavedModel(directory, config, manifest, built, load_retriever_for(directory, config, manifest))
