"""Hostile or mistaken config files cost bounded time and memory, and error messages echo values as short previews."""

import subprocess
import sys
import time
import tracemalloc

import pytest
import yaml

from ludwig_llm.errors import ConfigValidationError, UserError, preview
from ludwig_llm.schema import load_config
from ludwig_llm.schema.loader import MAX_CONFIG_BYTES

# 9 levels of 9 aliases each: 9**9 (387 million) strings once expanded, from a file of a few hundred bytes.
ALIAS_BOMB = "base_model: x\n" + 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
)

VALID = {
    "base_model": "some/model",
    "input_features": [{"name": "q", "type": "text"}],
    "output_features": [{"name": "a", "type": "text"}],
}


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def refusal(path):
    """The UserError that loading ``path`` raises, with the seconds and the peak of Python memory it took."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UserError) as info:
            load_config(path)
        return info.value, time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_alias_bomb_is_refused_fast_with_a_short_message(tmp_path):
    assert len(ALIAS_BOMB) < 600
    error, seconds, peak_bytes = refusal(write(tmp_path, ALIAS_BOMB))
    message = str(error)
    assert "more than 100,000 values once its YAML aliases (*name) are expanded" in message
    assert "config.yaml" in message
    assert seconds < 2 and peak_bytes < 20 * 1024 * 1024 and len(message) < 1024


def test_a_recursive_alias_is_refused(tmp_path):
    error, seconds, _ = refusal(write(tmp_path, "base_model: x\nloop: &loop [*loop]\n"))
    assert "YAML aliases" in str(error) and seconds < 2


def test_anchors_and_merge_keys_within_the_limit_still_load(tmp_path):
    text = yaml.safe_dump(VALID) + (
        "adapter: {<<: &lora {type: lora, r: 4}, alpha: 8}\n"
        "trainer: {type: finetune, batch_size: &rows 3, eval_batch_size: *rows}\n"
    )
    config = load_config(write(tmp_path, text))
    assert (config.adapter.r, config.adapter.alpha, config.trainer.eval_batch_size) == (4, 8, 3)


def test_an_oversized_file_is_refused_before_parsing(tmp_path):
    path = write(tmp_path, yaml.safe_dump(VALID) + "# " + "x" * MAX_CONFIG_BYTES + "\n")
    error, seconds, _ = refusal(path)
    assert "is larger than 1024 KiB" in str(error) and seconds < 2


@pytest.mark.parametrize("nesting", [
    "base_model: " + "[" * 5000 + "]" * 5000,                          # flow style: PyYAML alone takes a minute
    "base_model:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 1000)) + " " * 1000 + "v",  # block style
], ids=["flow", "block"])
def test_deep_nesting_is_refused_fast(tmp_path, nesting):
    error, seconds, _ = refusal(write(tmp_path, nesting + "\n"))
    assert "nests its values more than 100 levels deep" in str(error) and seconds < 2


def test_a_number_python_cannot_read_is_one_clear_message(tmp_path):
    error, _, _ = refusal(write(tmp_path, yaml.safe_dump(VALID) + "adapter: {type: lora, r: " + "1" * 5000 + "}\n"))
    assert "holds a value that cannot be read (Exceeds the limit (4300 digits)" in str(error)


LONG = "y" * 100_000


@pytest.mark.parametrize("sections,path,shown", [
    ({"unknown_key": LONG}, "unknown_key", "(got 'yyyy"),                          # unknown key
    ({"adapter": {"type": "lora", "bias": LONG}}, "adapter.bias", "'yyyy"),        # invalid value (choice)
    ({"adapter": {"type": LONG}}, "adapter.type", "unknown adapter type 'yyyy"),   # unknown registry name (did-you-mean)
    ({"adapter": {"type": "lora", "r": [0] * 100_000}}, "adapter.r", "[0, 0"),     # a huge list where a number belongs
    ({LONG: 1}, "'yyyy", "yyyy': unknown key"),                                  # an unknown key that is itself long
    ({"adapter": {"type": 10 ** 5000}}, "adapter.type", "<an integer of about 5001 digits>"),  # too long for repr()
])
def test_echoed_values_are_short_previews(sections, path, shown):
    with pytest.raises(ConfigValidationError) as info:
        load_config({**VALID, **sections})
    message = str(info.value)
    assert len(message) < 1024, message[:2000]
    assert f"  - {path}" in message and shown in message
    assert all(len(line) < 400 for line in message.splitlines())


def test_preview_keeps_short_values_as_repr_and_cuts_long_ones():
    assert preview("lora") == "'lora'" and preview(0) == "0" and preview(None) == "None" and preview({}) == "{}"
    assert len(preview("z" * 10_000)) <= 80 and len(preview([["a" * 100] * 100] * 100)) <= 80
    assert len(preview(10 ** 500)) <= 80


def test_check_config_on_an_alias_bomb_exits_non_zero_without_a_traceback(tmp_path):
    path = write(tmp_path, ALIAS_BOMB)
    result = subprocess.run([sys.executable, "-m", "ludwig_llm", "check_config", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "YAML aliases" in output and len(output) < 1024
