"""Reading configs: YAML files in, one clear UserError for a file that is not a config mapping;
the example configs (the seed's LLaMA-2 LoRA 4-bit finetune first) are valid."""

import glob
import os

import pytest
import yaml

from ludwig_llm.errors import ConfigValidationError, UserError
from ludwig_llm.schema import load_config, read_yaml
from ludwig_llm.schema.loader import flatten_errors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "configs", "*.yaml")))
SEED_EXAMPLE = os.path.join(ROOT, "examples", "configs", "llama2_lora_4bit_finetune.yaml")


def test_there_are_example_configs():
    assert SEED_EXAMPLE in EXAMPLES
    assert len(EXAMPLES) >= 3


def test_the_seed_example_is_valid_llama2_lora_4bit_finetune():
    config = load_config(SEED_EXAMPLE)
    assert config.model_type == "llm"
    assert config.base_model == "meta-llama/Llama-2-7b-hf"
    assert [(f.name, f.type) for f in config.input_features] == [("input", "text")]
    assert [(f.name, f.type) for f in config.output_features] == [("response", "text")]
    assert config.adapter.type == "lora" and config.adapter.r == 8
    assert config.quantization.bits == 4 and config.quantization.bnb_4bit_quant_type == "nf4"
    assert config.trainer.type == "finetune"
    assert (config.trainer.learning_rate, config.trainer.batch_size, config.trainer.gradient_accumulation_steps, config.trainer.epochs) == (
        0.0001, 1, 8, 3
    )
    assert "[INST] {__sample__} [/INST]" in config.prompt.template
    assert config.prompt.template.startswith("<<SYS>>\n")


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_example_config_is_valid_and_round_trips(path):
    config = load_config(path)
    dumped = config.to_dict()
    assert load_config(dumped) == config
    assert load_config(yaml.safe_load(yaml.safe_dump(dumped, sort_keys=False))) == config


def test_example_kinds():
    by_name = {os.path.basename(p): load_config(p) for p in EXAMPLES}
    icl = by_name["icl_category_sentiment.yaml"]
    assert icl.trainer.type == "none" and icl.output_feature.type == "category"
    assert icl.prompt.retrieval.type == "semantic" and icl.prompt.retrieval.k == 3
    ray = by_name["ray_lora_finetune.yaml"]
    assert ray.backend.type == "ray" and ray.backend.trainer.num_workers == 2


def test_load_config_accepts_a_path_object_and_a_dict(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(open(SEED_EXAMPLE).read())
    assert load_config(path) == load_config(SEED_EXAMPLE) == load_config(read_yaml(SEED_EXAMPLE))


def test_load_config_does_not_change_the_given_dict():
    data = read_yaml(SEED_EXAMPLE)
    before = yaml.safe_dump(data)
    load_config(data)
    assert yaml.safe_dump(data) == before


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base_model: x\ninput_features: [{name: a, type: text}]\noutput_features: [{name: b, type: text}]\nadaptr: lora\n")
    with pytest.raises(ConfigValidationError) as info:
        load_config(path)
    assert str(info.value).splitlines()[0] == f"Invalid config {path}: 1 problem(s)"
    assert info.value.issues[0].path == "adaptr"


BAD_FILES = {
    "syntax": ("base_model: x\ninput_features: [\n", "is not valid YAML at line 3, column 1"),
    "tab": ("a:\n\t- b\n", "is not valid YAML at line 2"),
    "two documents": ("a: 1\n---\nb: 2\n", "expected a single document in the stream, but found another document"),
    "empty": ("", "is empty"),
    "only a comment": ("# nothing here\n", "is empty"),
    "whitespace": ("\n\n   \n", "is empty"),
    "list": ("- base_model: x\n- b\n", "must hold a mapping of settings (key: value), not a list"),
    "scalar": ("just words\n", "must hold a mapping of settings (key: value), not a str"),
    "number": ("42\n", "not a int"),
}


@pytest.mark.parametrize("text,message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_file_that_is_not_a_config_mapping_gets_one_clear_message(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert not isinstance(info.value, ConfigValidationError)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="cannot read config file .*: No such file or directory"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="cannot read config file"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"base_model: \xff\xfe\x00\n")
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_config(binary)


def test_flatten_errors_paths_and_values():
    data = {"adapter": {"r": 0}, "input_features": [{"name": 3}], "x": 1}
    messages = {
        "adapter": {"r": ["too small."]},
        "input_features": {0: {"name": ["Not a valid string."]}},
        "x": ["unknown key."],
        "missing": ["Missing data for required field."],
    }
    assert [str(issue) for issue in flatten_errors(messages, data)] == [
        "adapter.r: too small. (got 0)",
        "input_features[0].name: Not a valid string. (got 3)",
        "x: unknown key. (got 1)",
        "missing: required, but missing.",
    ]
