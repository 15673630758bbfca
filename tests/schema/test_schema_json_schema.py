"""The exported JSON Schema: a valid draft 2020-12 schema, generated from the config classes, that
accepts what the loader accepts (example configs, shorthand, rendered configs) and rejects unknown keys."""

import copy
import glob
import json
import os

import jsonschema
import pytest
import yaml

from ludwig_llm.schema import load_config, read_yaml
from ludwig_llm.schema import registry as registries
from ludwig_llm.schema.json_schema import class_json_schema, config_json_schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "configs", "*.yaml")))
SEED_EXAMPLE = os.path.join(ROOT, "examples", "configs", "llama2_lora_4bit_finetune.yaml")


@pytest.fixture(scope="module")
def schema():
    return config_json_schema()


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def errors(validator, data):
    return list(validator.iter_errors(data))


def with_(**overrides):
    data = read_yaml(SEED_EXAMPLE)
    data.update(copy.deepcopy(overrides))
    return data


def test_is_a_valid_draft_2020_12_schema(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator
    json.dumps(schema)  # plain JSON


def test_top_level_shape(schema):
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["base_model", "input_features", "output_features"]
    assert set(schema["properties"]) == {
        "base_model", "input_features", "output_features", "model_type", "prompt", "adapter", "quantization",
        "model_parameters", "generation", "trainer", "preprocessing", "backend", "tracking",
    }
    assert all(prop.get("description") for prop in schema["properties"].values())
    lora = next(v for v in schema["properties"]["adapter"]["anyOf"] if v.get("properties", {}).get("type", {}).get("enum") == ["lora"])
    assert lora["properties"]["r"] == {
        "type": "integer", "description": lora["properties"]["r"]["description"], "default": 8, "minimum": 1,
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_accepts_the_example_configs_and_their_rendered_form(validator, path):
    assert errors(validator, read_yaml(path)) == []
    assert errors(validator, load_config(path).to_dict()) == []


ACCEPTED = {
    "shorthand adapter": with_(adapter="lora"),
    "shorthand quantization": with_(quantization=4),
    "shorthand trainer": with_(trainer="finetune"),
    "null adapter": with_(adapter=None, quantization=None),
    "8-bit": with_(quantization={"bits": 8, "llm_int8_threshold": 4.0}),
    "rope": with_(model_parameters={"rope_scaling": {"type": "llama3", "factor": 8.0}}),
    "ray": with_(backend={"type": "ray", "trainer": {"resources_per_worker": {"CPU": 2}}}),
}


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepts_what_the_loader_accepts(validator, data):
    load_config(data)
    assert errors(validator, data) == []


REJECTED = {
    "unknown top-level key": with_(trainr={"type": "finetune"}),
    "unknown adapter key": with_(adapter={"type": "lora", "rr": 4}),
    "unknown nested key": with_(adapter={"type": "lora", "postprocessor": {"merge": True}}),
    "unknown feature key": with_(input_features=[{"name": "input", "type": "text", "colum": "x"}]),
    "unknown trainer key": with_(trainer={"type": "finetune", "epocs": 3}),
    "unknown prompt key": with_(prompt={"templte": "{__sample__}"}),
    "misspelled enum": with_(adapter={"type": "lora", "bias": "nne"}),
    "misspelled type": with_(adapter="lorra"),
    "out of range": with_(adapter={"type": "lora", "r": 0}),
    "exclusive minimum": with_(model_parameters={"rope_scaling": {"type": "linear", "factor": 1.0}}),
    "wrong type": with_(trainer={"type": "finetune", "epochs": "three"}),
    "missing required": {k: v for k, v in with_().items() if k != "base_model"},
    "feature without name": with_(input_features=[{"type": "text"}]),
    "mapping without its type": with_(trainer={"epochs": 3}),
    "4-bit options with 8 bits": with_(quantization={"bits": 8, "bnb_4bit_quant_type": "nf4"}),
    "another adapter's option": with_(adapter={"type": "adalora", "r": 8}),
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_rejects_what_the_loader_rejects(validator, data):
    from ludwig_llm.errors import ConfigValidationError

    with pytest.raises(ConfigValidationError):
        load_config(data)
    assert errors(validator, data) != []


def test_every_registered_class_schema_accepts_its_defaults():
    for reg in vars(registries).values():
        if not isinstance(reg, registries.Registry) or reg.kind in ("retrieval type", "model type", "chat template"):
            continue
        for key, cls in reg.items():
            required = {"name": "x"} if "name" in class_json_schema(cls).get("required", []) else {}
            sub_schema = class_json_schema(cls)
            jsonschema.Draft202012Validator.check_schema(sub_schema)
            assert list(jsonschema.Draft202012Validator(sub_schema).iter_errors(cls.from_dict(required).to_dict())) == [], cls


def test_schema_defaults_match_the_loaded_defaults(schema):
    minimal = {"base_model": "m", "input_features": [{"name": "i", "type": "text"}], "output_features": [{"name": "o", "type": "text"}]}
    rendered = load_config(minimal).to_dict()
    checked = []

    def walk(sub_schema, value, path):
        for key, prop in sub_schema.get("properties", {}).items():
            if "default" in prop:
                assert value[key] == prop["default"], f"{path}{key}"
                checked.append(f"{path}{key}")
            if "properties" in prop:
                walk(prop, value[key], f"{path}{key}.")

    walk(schema, rendered, "")
    assert {"model_type", "generation.max_new_tokens", "prompt.retrieval.k", "preprocessing.split_seed"} <= set(checked)


def test_export_is_deterministic():
    assert json.dumps(config_json_schema()) == json.dumps(config_json_schema())


def test_yaml_editor_view_validates_a_yaml_file(validator, tmp_path):
    """What an editor does: parse the YAML, validate against the schema."""
    path = tmp_path / "c.yaml"
    path.write_text(open(SEED_EXAMPLE).read().replace("type: lora", "type: lora\n    rank: 8"))
    found = errors(validator, yaml.safe_load(path.read_text()))
    assert found and any("anyOf" in e.schema_path for e in found)
