"""Weights integrity of a saved model directory: sha256 of each weights file recorded at save and checked
at load, every tensor finite, and pickle weights refused.

A model directory copied half-way, overwritten, or truncated by a full disk must fail with the file's
name and what to do, never load and predict garbage.
"""

from __future__ import annotations

import hashlib
import os
from typing import Dict, Iterable, List

import torch
from safetensors import SafetensorError, safe_open

from ludwig_llm.errors import UserError

WEIGHTS_SUFFIX = ".safetensors"
# Files that torch.load / pickle would read: loading them can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_CHUNK = 1 << 20
_REMEDY = "copy the model directory again from where it was saved, or save it again (`train --resume <run>` rebuilds it from the last checkpoint)"


def weight_files(directory: str) -> List[str]:
    """Paths, relative to `directory`, of every safetensors file in it (subdirectories included), sorted."""
    found = []
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(WEIGHTS_SUFFIX):
                found.append(os.path.relpath(os.path.join(root, name), directory))
    return sorted(found)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_checksums(directory: str) -> Dict[str, str]:
    """{relative path: sha256} of the weights files of `directory`, for the manifest."""
    return {name: sha256_of(os.path.join(directory, name)) for name in weight_files(directory)}


def verify_model_files(directory: str, weights: str, checksums: Dict[str, str]) -> None:
    """Raise a UserError naming the file when the weights of a saved model directory cannot be trusted.

    `weights` is the manifest's kind ("adapter", "full" or "base") and `checksums` what it recorded at save
    (empty for directories saved before checksums were recorded: then only presence, format and values are checked).
    """
    refuse_pickle_weights(directory)
    if weights == "adapter":
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not os.path.isfile(os.path.join(directory, name)):
                raise UserError(f"{os.path.join(directory, name)} is missing: the model directory is incomplete; {_REMEDY}.")
    elif weights == "full" and not weight_files(directory):
        raise UserError(f"{directory} has no *.safetensors weights file although its manifest says it holds full weights; {_REMEDY}.")
    for name, expected in sorted(checksums.items()):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise UserError(f"{path} is missing: the model directory is incomplete; {_REMEDY}.")
        if sha256_of(path) != expected:
            raise UserError(f"{path} is corrupt: its sha256 differs from the one recorded when the model was saved "
                            f"(the file was truncated, overwritten or changed); {_REMEDY}.")
    check_finite(os.path.join(directory, name) for name in checksums or weight_files(directory))


def refuse_pickle_weights(directory: str) -> None:
    for name in sorted(os.listdir(directory)):
        if name.endswith(PICKLE_SUFFIXES) and os.path.isfile(os.path.join(directory, name)):
            raise UserError(f"{os.path.join(directory, name)}: pickle weights are refused (loading a pickle can run any code). "
                            "Convert it to safetensors (safetensors.torch.save_file(torch.load(path, weights_only=True), "
                            "'<name>.safetensors'), from a source you trust) and remove the pickle file.")


def check_finite(paths: Iterable[str]) -> None:
    """Every tensor of every safetensors file is finite; a file that cannot be parsed is named as corrupt."""
    for path in paths:
        try:
            with safe_open(path, framework="pt") as weights:
                for key in weights.keys():
                    tensor = weights.get_tensor(key)
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                        raise UserError(f"{path}: tensor '{key}' holds NaN or infinite values; the weights are corrupt "
                                        f"or training diverged. {_REMEDY[0].upper()}{_REMEDY[1:]}.")
        except (SafetensorError, OSError, ValueError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{path} is truncated or corrupt, not a readable safetensors file ({detail}); {_REMEDY}.") from None
