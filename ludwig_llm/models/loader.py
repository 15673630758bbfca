"""Load tokenizers and causal-LM base models (optionally 4/8-bit quantized, with RoPE scaling).

``path`` arguments are what ``resolve.resolve_base_model`` returns: a local
model directory or a Hugging Face Hub id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import torch
from huggingface_hub import hf_hub_download
from peft import prepare_model_for_kbit_training
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from ludwig_llm.errors import UserError
from ludwig_llm.models.precision import DTYPE_NAMES

TRUST_REMOTE_CODE_KEY = "model_parameters.trust_remote_code"


def hf_token() -> str | None:
    """The Hugging Face access token from the environment, if any (never log it)."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def _torch_dtype(dtype):
    """A schema dtype name ("float32", "bfloat16", "float16") as a torch dtype; torch dtypes, "auto" and None pass."""
    return DTYPE_NAMES[dtype] if isinstance(dtype, str) and dtype != "auto" else dtype


# ---------------------------------------------------------------- remote code


def _local_json(path: str, filename: str) -> dict | None:
    file = os.path.join(path, filename)
    if not os.path.isfile(file):
        return None
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"Could not read {file}: {e}") from e


def _hub_json(repo_id: str, filename: str) -> dict | None:
    # Best effort: when the Hub can't be reached, from_pretrained reports the
    # real problem right after, with its own message.
    try:
        with open(hf_hub_download(repo_id, filename, token=hf_token()), encoding="utf-8") as f:
            return json.load(f)
    except Exception:
        return None


def _model_json(path: str, filename: str) -> dict | None:
    if os.path.isdir(path):
        return _local_json(path, filename)
    return _hub_json(path, filename)


def needs_remote_code(path: str) -> bool:
    """Whether the model or its tokenizer declares custom Python code (an ``auto_map``)."""
    for filename in ("config.json", "tokenizer_config.json"):
        content = _model_json(path, filename)
        if content and content.get("auto_map"):
            return True
    return False


def check_remote_code(path: str, trust_remote_code: bool) -> None:
    """Refuse models that ship their own Python code unless the user opted in."""
    if trust_remote_code or not needs_remote_code(path):
        return
    raise UserError(
        f"The model {path} needs custom Python code from its repository (its config has an 'auto_map'). "
        "That code runs on this machine with your permissions, so it is not run unless you allow it. "
        "If you trust the model's authors, set "
        f"`{TRUST_REMOTE_CODE_KEY}: true` in your config."
    )


@contextlib.contextmanager
def hub_errors(path: str):
    """A Hub id that cannot be fetched (offline, unreachable, unknown) becomes one message saying what to do."""
    try:
        yield
    except OSError:
        if os.path.exists(path):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is on and it is not in the local cache" if offline else "the Hugging Face hub cannot be reached or has no such model"
        raise UserError(f"base_model {path}: cannot be loaded: {why}. Turn HF_HUB_OFFLINE off (unset it) on a machine with "
                        "network access, or give a local model directory or .gguf file as base_model.") from None


# ---------------------------------------------------------------- tokenizer


def load_tokenizer(path: str, trust_remote_code: bool = False, padding_side: str = "right"):
    """Load the tokenizer, making sure it has a pad token.

    Use ``padding_side="right"`` for training and ``"left"`` for batched generation.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    check_remote_code(path, trust_remote_code)
    with hub_errors(path):
        tokenizer = AutoTokenizer.from_pretrained(path, token=hf_token(), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # Reusing an existing token avoids resizing the model's embeddings;
        # padded positions are masked out anyway.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise UserError(f"The tokenizer of {path} has no pad, eos or unk token to pad batches with.")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = padding_side
    return tokenizer


# ---------------------------------------------------------------- quantization


def build_bnb_config(quantization: dict):
    """A transformers ``BitsAndBytesConfig`` from our quantization section (validated by the schema):
    ``bits`` 4 or 8 plus bitsandbytes' own options."""
    options = dict(quantization)
    bits = options.pop("bits", 4)
    if "bnb_4bit_compute_dtype" in options:
        options["bnb_4bit_compute_dtype"] = _torch_dtype(options["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(load_in_4bit=bits == 4, load_in_8bit=bits == 8, **options)


def is_quantized(model) -> bool:
    """Whether ``model`` holds bitsandbytes 4/8-bit weights."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


# ---------------------------------------------------------------- rope scaling


def apply_rope_scaling(config, rope_scaling: dict) -> None:
    """Set RoPE scaling on ``config`` in place, the transformers 5 way.

    transformers 5 keeps all RoPE settings in ``config.rope_parameters``
    (``rope_scaling`` is only a deprecated alias), and the rotary embedding
    reads ``rope_type``/``factor``/``rope_theta`` from there when the model is
    built, so the scaling must be on the config before loading.
    """
    current = getattr(config, "rope_parameters", None)
    if not current:
        raise UserError(
            f"rope_scaling was given but the model type {config.model_type!r} does not use rotary position embeddings."
        )
    scaling = dict(rope_scaling)  # the schema's rope_params(): a valid rope_type and its options

    nested_keys = config.nested_rope_parameter_keys(current)
    if nested_keys:  # per-layer-type settings (e.g. Gemma 3): scale each of them
        config.rope_parameters = {key: _scaled(current[key], scaling) for key in nested_keys}
    else:
        config.rope_parameters = _scaled(current, scaling)
    config.standardize_rope_params()
    try:
        config.validate_rope()
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"Invalid rope_scaling {rope_scaling}: {e}") from e


def _scaled(current: dict | None, scaling: dict) -> dict:
    # Only the base frequency survives: leftover keys of another rope type
    # (e.g. llama3's low_freq_factor) would fail validation of the new type.
    kept = {key: current[key] for key in ("rope_theta", "partial_rotary_factor") if current and key in current}
    return {**kept, **scaling}


# ---------------------------------------------------------------- model


def load_config(path: str, trust_remote_code: bool = False, rope_scaling: dict | None = None):
    check_remote_code(path, trust_remote_code)
    with hub_errors(path):
        config = AutoConfig.from_pretrained(path, token=hf_token(), trust_remote_code=trust_remote_code)
    if rope_scaling:
        apply_rope_scaling(config, rope_scaling)
    return config


def load_base_model(
    path: str,
    *,
    quantization: dict | None = None,
    rope_scaling: dict | None = None,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str | None = None,
    device_map=None,
):
    """Load ``AutoModelForCausalLM`` from ``path``.

    ``quantization``: our quantization section (``bits`` 4 or 8 plus bitsandbytes
    options); works on CPU too. ``rope_scaling``: e.g. ``{"rope_type": "linear",
    "factor": 2.0}``. ``dtype``: a torch dtype, its name ("float32", "bfloat16", "float16"), "auto" or None
    (None lets transformers 5 pick, which means the checkpoint's own dtype).
    ``device_map``: passed to transformers; for a quantized model on a machine
    with CUDA it defaults to the current GPU, because bitsandbytes models cannot
    be moved with ``.to()`` after loading.
    """
    config = load_config(path, trust_remote_code, rope_scaling)
    _check_causal_lm(path, config)
    kwargs = {"config": config, "token": hf_token(), "trust_remote_code": trust_remote_code}
    torch_dtype = _torch_dtype(dtype)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if quantization:
        kwargs["quantization_config"] = build_bnb_config(quantization)
        _log_8bit_input_cast_once()
        device_map = device_map if device_map is not None else _default_quantized_device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def _check_causal_lm(path: str, config) -> None:
    if getattr(config, "auto_map", None):
        return  # custom code (already opted in) brings its own classes
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(
            f"{path} is not a causal (decoder-only) language model: its model type is {config.model_type!r}."
        )


class _OnceFilter(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix, self.seen = prefix, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        seen, self.seen = self.seen, True
        return not seen


def _log_8bit_input_cast_once() -> None:
    # bitsandbytes logs this warning for every 8-bit layer on every forward
    # pass unless the activations are float16, flooding training logs.
    bnb_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _OnceFilter) for f in bnb_logger.filters):
        bnb_logger.addFilter(_OnceFilter("MatMul8bitLt: inputs will be cast"))


def _default_quantized_device_map():
    if torch.cuda.is_available():
        return {"": torch.cuda.current_device()}
    return None


# ---------------------------------------------------------------- training prep


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass to save memory."""
    # Non-reentrant checkpointing works with frozen inputs (no
    # enable_input_require_grads hack) and is what torch now recommends.
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # The KV cache is useless while training and conflicts with checkpointing.
    model.config.use_cache = False


def prepare_for_kbit_training(model, gradient_checkpointing: bool):
    """Get a 4/8-bit model ready for adapter training; call before ``apply_adapter``.

    Freezes the base weights and upcasts the non-quantized ones (norms,
    embeddings) to float32 for stable training. For a model that is not
    quantized this only enables gradient checkpointing, if asked.
    """
    if is_quantized(model):
        # Checkpointing is enabled below instead: peft's own path uses the
        # deprecated transformers API and reentrant checkpointing.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model
