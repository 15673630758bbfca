"""The docs' view of the schema: every field documented, every default shown equal to what the loader
fills in, the field order and filters the pages rely on, and the examples on the pages valid."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any, Dict, List, Optional

import marshmallow
import pytest
import yaml

from docs_macros import schema_docs
from docs_macros.cli_docs import cli_reference, subcommands, table_cell
from docs_macros.schema_docs import FieldDoc, class_defaults, config_yaml, schema_class_to_fields
from ludwig_llm.schema import load_config
from ludwig_llm.schema.base import CLASS_OF_SCHEMA, BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, TypedUnion, option
from ludwig_llm.schema.template import default_template
from ludwig_llm.schema.registry import adapter_registry

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MINIMAL = {
    "base_model": "smollm2-135m-instruct",
    "input_features": [{"name": "input", "type": "text"}],
    "output_features": [{"name": "response", "type": "text"}],
}


def _config_classes() -> List[type]:
    # Every @config_class registers itself here, including the sections that are only ever nested.
    return [cls for cls in CLASS_OF_SCHEMA.values() if cls.__module__.startswith("ludwig_llm.")]


def _class_id(cls) -> str:
    return cls.__name__


def _placeholders(cls) -> Dict[str, Any]:
    """Values for the class's required fields: their documented example, else a name."""
    out = {}
    for name, field in cls.Schema().fields.items():
        if field.required:
            example = field.metadata.get("example")
            out[name] = example if example is not None else "placeholder"
    return out


def _at(data: Dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[key]
    return data


@pytest.mark.parametrize("cls", _config_classes(), ids=_class_id)
def test_every_field_has_a_description(cls):
    assert cls.description().strip(), f"{cls.__name__} has no docstring (its description in the docs)"
    for name, field in cls.Schema().fields.items():
        description = (field.metadata.get("description") or "").strip()
        assert description, f"{cls.__name__}.{name} has no description"


@pytest.mark.parametrize("cls", _config_classes(), ids=_class_id)
def test_documented_defaults_are_what_the_class_loads(cls):
    loaded = cls.from_dict(_placeholders(cls)).to_dict()
    for field in schema_class_to_fields(cls):
        if field.required:
            continue
        expected = _at(loaded, field.name)
        assert field.default == expected, f"{cls.__name__}.{field.name}: docs say {field.default!r}, loader fills {expected!r}"
        # What the page prints must read back as the same value.
        assert yaml.safe_load(field.default_yaml) == expected, f"{cls.__name__}.{field.name}: shown as {field.default_yaml!r}"


def test_documented_defaults_are_what_the_config_loader_fills_in():
    """Through the real entry point (`load_config`, cross-field checks included), for the whole LLM config."""
    loaded = load_config(dict(MINIMAL)).to_dict()
    fields = schema_class_to_fields(schema_docs.get_llm_schema())
    assert {"generation.max_new_tokens", "prompt.retrieval.k", "preprocessing.split", "trainer"} <= {f.name for f in fields}
    for field in fields:
        if not field.required:
            assert field.default == _at(loaded, field.name), field.name


@pytest.mark.parametrize("cls", _config_classes(), ids=_class_id)
def test_render_yaml_output_is_a_valid_section(cls):
    text = config_yaml(cls, parent="outer.section", updates=_placeholders(cls))
    data = yaml.safe_load(text)["outer"]["section"]
    # The block loads, and it describes the same config as leaving every option out.
    assert cls.from_dict(data).to_dict() == cls.from_dict(_placeholders(cls)).to_dict()


def test_render_yaml_applies_updates_and_lists():
    rope = schema_docs.get_rope_scaling_schema()
    assert yaml.safe_load(config_yaml(rope, parent="rope_scaling", updates={"type": "linear", "factor": 2.0})) == {
        "rope_scaling": {"type": "linear", "factor": 2.0}
    }
    feature = schema_docs.get_input_feature_schema("text")
    data = yaml.safe_load(config_yaml(feature, parent="input_features", updates={"name": "q"}, in_list=True))
    assert data["input_features"][0]["name"] == "q" and data["input_features"][0]["preprocessing"]["max_sequence_length"] == 512
    # Nested updates merge into the section instead of replacing it.
    ray = yaml.safe_load(config_yaml(schema_docs.get_backend_schema("ray"), updates={"trainer": {"num_workers": 2}}))
    assert ray["trainer"] == {**class_defaults(schema_docs.get_backend_schema("ray"))["trainer"], "num_workers": 2}


def _unions() -> List[tuple]:
    """(owner class, field name, TypedUnion) for every registry-polymorphic field of every config class."""
    out = []
    for cls in _config_classes():
        for name, field in cls.Schema().fields.items():
            inner = field.inner if isinstance(field, marshmallow.fields.List) else field
            if isinstance(inner, TypedUnion):
                out.append(pytest.param(cls, name, inner, id=f"{cls.__name__}.{name}"))
    return out


@pytest.mark.parametrize("owner, name, union", _unions())
def test_a_key_the_loader_requires_is_documented_as_required(owner, name, union):
    """Review error 1: `type` of features and trainers and quantization `bits` were shown with a default
    although the loader refuses a section without them. What the loader does decides what the docs say."""
    try:
        union.deserialize({})
        refused = False
    except marshmallow.ValidationError as error:
        refused = union.key in error.messages
    for key_value, cls in union.registry.items():
        key_field = next(f for f in schema_class_to_fields(cls) if f.name == union.key)
        assert key_field.required == refused, f"{cls.__name__}.{union.key} (in {owner.__name__}.{name}): required={refused}"
        if refused:
            assert key_field.default_yaml == ""
            # The block pages render still names the key, so it can be pasted.
            assert yaml.safe_load(config_yaml(cls))[union.key] == key_value


def test_the_sections_review_error_1_named_are_required():
    for cls in (schema_docs.get_trainer_schema("finetune"), schema_docs.get_trainer_schema("none"),
                schema_docs.get_input_feature_schema("text"), schema_docs.get_output_feature_schema("text"),
                schema_docs.get_output_feature_schema("category")):
        assert {f.name: f for f in schema_class_to_fields(cls)}["type"].required, cls.__name__
    for cls in schema_docs.get_quantization_schemas():
        assert {f.name: f for f in schema_class_to_fields(cls)}["bits"].required, cls.__name__


def test_changed_defaults_lists_what_an_example_block_changes():
    ray = schema_docs.get_backend_schema("ray")
    changes = schema_docs.changed_defaults(ray, {"type": "ray", "trainer": {"num_workers": 2, "use_gpu": True, "max_failures": 0}})
    assert changes == [
        {"name": "trainer.num_workers", "value": "2", "default": "1"},
        {"name": "trainer.use_gpu", "value": "true", "default": "false"},
    ]
    # Required fields have no default to differ from.
    assert schema_docs.changed_defaults(schema_docs.get_input_feature_schema("text"), {"name": "q"}) == []


def test_config_yaml_within_puts_the_enclosing_keys_first():
    strategy = schema_docs.get_strategy_schemas()[0]
    text = config_yaml(strategy, parent="backend.trainer.strategy", within={"backend": {"type": "ray"}})
    data = yaml.safe_load(text)
    assert list(data["backend"]) == ["type", "trainer"] and data["backend"]["type"] == "ray"
    assert data["backend"]["trainer"]["strategy"]["type"] == strategy.type
    load_config({**MINIMAL, "trainer": {"type": "finetune"}, **data})


def test_default_prompt_templates_are_the_prompt_builders():
    shown = schema_docs.get_default_prompt_templates()
    assert len(shown) == 4
    for entry in shown:
        assert entry["template"] == default_template(entry["task"], entry["retrieval"])


def test_section_getters():
    adapters = schema_docs.get_adapter_schemas()
    assert [a.type for a in adapters] == adapter_registry.names()
    assert adapters[0].type == "lora"
    for adapter in adapters:
        assert adapter.name() and adapter.description()
    assert schema_docs.get_quantization_schema().bits == 4
    assert sorted(q.bits for q in schema_docs.get_quantization_schemas()) == [4, 8]
    assert schema_docs.get_rope_scaling_schema().type == "linear"
    assert {r.type for r in schema_docs.get_rope_scaling_schemas()} >= {"linear", "dynamic", "yarn", "llama3"}
    assert schema_docs.get_trainer_schema().type == "finetune"
    assert schema_docs.get_backend_schema().type == "ray"
    assert schema_docs.get_generation_schema().name() == "Generation"


def test_field_order_name_and_type_first_then_impact():
    fields = schema_class_to_fields(schema_docs.get_input_feature_schema("text"))
    assert [f.name for f in fields[:2]] == ["name", "type"]
    for cls in _config_classes():
        top = [f for f in schema_class_to_fields(cls) if "." not in f.name and f.name not in ("name", "type")]
        impacts = [f.impact for f in top]
        assert impacts == sorted(impacts, reverse=True), f"{cls.__name__}: not sorted by impact"


def test_nested_sections_are_flattened_and_kept_together():
    names = [f.name for f in schema_class_to_fields(schema_docs.get_trainer_schema("finetune"))]
    assert "optimizer" not in names
    optimizer = [i for i, n in enumerate(names) if n.startswith("optimizer.")]
    assert optimizer and optimizer == list(range(optimizer[0], optimizer[-1] + 1))
    assert "optimizer.betas" in names and "learning_rate_scheduler.decay" in names


def test_exclude_takes_fields_and_whole_sections():
    lora = schema_docs.get_adapter_schema("lora")
    names = [f.name for f in schema_class_to_fields(lora, exclude=["type", "postprocessor", "r"])]
    assert "type" not in names and "r" not in names and "alpha" in names
    assert not any(n.startswith("postprocessor.") for n in names)
    names = [f.name for f in schema_class_to_fields(lora, exclude=["postprocessor.progressbar"])]
    assert "postprocessor.merge_adapter_into_base_model" in names and "postprocessor.progressbar" not in names


def test_field_facts():
    by_name = {f.name: f for f in schema_class_to_fields(schema_docs.get_adapter_schema("lora"))}
    assert by_name["bias"].choices == ["none", "all", "lora_only"]
    assert by_name["dropout"].range == "0.0 <= value <= 1.0"
    assert by_name["target_modules"].type == "list of strings or `all-linear` or null"
    assert by_name["r"].high_impact and not by_name["bias"].high_impact
    retrieval = {f.name: f for f in schema_class_to_fields(schema_docs.get_retrieval_schema())}
    assert retrieval["type"].choices_yaml == ["null", "random", "semantic"]
    llm = {f.name: f for f in schema_class_to_fields(schema_docs.get_llm_schema())}
    assert llm["base_model"].required and llm["base_model"].default_yaml == ""
    assert llm["adapter"].key == "type" and "lora" in llm["adapter"].choices
    assert llm["quantization"].key == "bits" and llm["quantization"].choices == [4, 8]


def test_internal_fields_are_left_out():
    @config_class
    class _WithInternal(BaseConfig):
        """A section with a field users never set."""

        shown: int = option(1, "A field users set.")
        hidden: int = option(2, "Bookkeeping filled in by ludwig_llm.", internal=True)

    try:
        assert [f.name for f in schema_class_to_fields(_WithInternal)] == ["shown"]
    finally:
        CLASS_OF_SCHEMA.pop(_WithInternal.Schema)  # leave the global class index as other tests expect it


def test_cli_reference_covers_every_argument():
    text = cli_reference()
    for name, parser in subcommands().items():
        assert f"## `{name}`" in text
        for action in parser._actions:
            if action.help and action.option_strings and "-h" not in action.option_strings:
                assert table_cell(action.help) in text, f"{name} {action.option_strings}: help missing"


# ---------------------------------------------------------------------------------------------
# The pages' own examples


def _yaml_blocks(markdown: str) -> List[str]:
    """The literal YAML blocks of a page, leaving out those marked with a `<!-- docs-check: ... -->` comment
    (not a config, or a config shown because it is refused: tests/docs/test_docs_pages.py checks those)."""
    blocks = re.findall(r"(<!-- docs-check:[^>]*-->\s*)?```yaml\n(.*?)```", markdown, flags=re.S)
    return [block for marker, block in blocks if not marker and "{{" not in block and "{%" not in block]


def _full_configs() -> List[tuple]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, block in enumerate(_yaml_blocks(page.read_text(encoding="utf-8"))):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and {"base_model", "input_features", "output_features"} <= set(data):
                out.append(pytest.param(data, id=f"{page.relative_to(DOCS)}#{i}"))
    return out


@pytest.mark.parametrize("config", _full_configs())
def test_complete_configs_on_the_pages_are_valid(config):
    load_config(config)


def _python_block(page: Path) -> Optional[str]:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    return blocks[0] if blocks else None


def test_the_developer_guide_adapter_example_works():
    """The page claims one class and one decorator are enough for validation and docs: run its code."""
    code = _python_block(DOCS / "developer_guide" / "add_an_adapter.md")
    assert code and "adapter_registry.register" in code
    # Run it as the module it would be in real life (dataclasses look their module up in sys.modules).
    module = types.ModuleType("docs_adapter_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "add_an_adapter.md", "exec"), module.__dict__)
    finally:
        new_types = [name for name in adapter_registry.names() if adapter_registry.get(name).__module__ == module.__name__]
    try:
        assert len(new_types) == 1
        new_type = new_types[0]
        cls = adapter_registry.get(new_type)
        assert cls in schema_docs.get_adapter_schemas()
        names = [f.name for f in schema_class_to_fields(cls, exclude=["type"])]
        assert names[0] == "r" and "reset_steps" in names
        config = load_config({**MINIMAL, "adapter": {"type": new_type, "r": 4}, "trainer": {"type": "finetune"}})
        assert config.adapter.r == 4 and config.adapter.reset_steps == 500
        with pytest.raises(Exception, match="out of range"):
            load_config({**MINIMAL, "adapter": {"type": new_type, "r": 0}, "trainer": {"type": "finetune"}})
    finally:
        for name in new_types:
            CLASS_OF_SCHEMA.pop(adapter_registry.get(name).Schema, None)
            adapter_registry.unregister(name)
        del sys.modules[module.__name__]


def test_field_doc_yaml_forms():
    def shown(value):
        return FieldDoc("x", "any", "d", False, value, Impact.LOW).default_yaml

    assert shown(["a", "b"]) == "[a, b]"
    assert shown(None) == "null" and shown(True) == "true" and shown("nf4") == "nf4"
    assert shown({"type": "random"}) == "{type: random}"
    for value in ["line one\nline two", "", "null", "1e-8", 1e-8, [0.9, 0.999]]:
        assert yaml.safe_load(shown(value)) == value and "\n" not in shown(value)
