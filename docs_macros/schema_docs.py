"""What the configuration pages show about a config class: its fields, their defaults, and a YAML example.

Everything is read from the schema classes themselves (field metadata, validators, registries), so
the pages cannot drift from what the loader accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, List, Optional

import marshmallow
import yaml
from marshmallow import fields as mm

from ludwig_llm.schema import llm  # noqa: F401  (importing the top-level config fills every registry)
from ludwig_llm.schema.base import CLASS_OF_SCHEMA, dumped_defaults
from ludwig_llm.schema.fields import Choice, Impact, Range, TypedUnion
from ludwig_llm.schema.generation import GenerationConfig
from ludwig_llm.schema.model_parameters import ModelParametersConfig
from ludwig_llm.schema.preprocessing import PreprocessingConfig
from ludwig_llm.schema.prompt import PromptConfig, RetrievalConfig
from ludwig_llm.schema.registry import (
    adapter_registry,
    backend_registry,
    category_decoder_registry,
    chat_template_registry,
    input_feature_registry,
    model_type_registry,
    output_feature_registry,
    quantization_registry,
    retrieval_registry,
    rope_scaling_registry,
    split_registry,
    strategy_registry,
    trainer_registry,
)
from ludwig_llm.schema.rewards import reward_registry
from ludwig_llm.schema.template import default_template

from docs_macros.union_keys import is_required_key

# ---------------------------------------------------------------------------------------------
# Section getters: the names the page templates call.
# ---------------------------------------------------------------------------------------------


def get_llm_schema():
    return model_type_registry.get("llm")


def get_prompt_schema():
    return PromptConfig


def get_retrieval_schema():
    return RetrievalConfig


def get_default_prompt_templates() -> List[Dict[str, Any]]:
    """The template used when `prompt.template` is not set, for each combination of `prompt.task` and
    retrieval, read from the function the prompt builder calls."""
    return [
        {"task": has_task, "retrieval": has_context, "template": default_template(has_task, has_context)}
        for has_task in (False, True)
        for has_context in (False, True)
    ]


def get_retrieval_types() -> List[tuple]:
    """(name, class) of each retrieval strategy. They are plain documented classes, not config
    sections, so they have no `.type` of their own."""
    return retrieval_registry.items()


def get_adapter_schemas() -> List[type]:
    """Every registered adapter class, in registration order (LoRA first), so pages are stable."""
    return [cls for _, cls in adapter_registry.items()]


def get_adapter_schema(type: str = "lora"):
    return adapter_registry.get(type)


def get_quantization_schema(bits: int = 4):
    """One quantization class; 4-bit by default because that is the QLoRA case pages show first."""
    return quantization_registry.get(bits)


def get_quantization_schemas() -> List[type]:
    return [cls for _, cls in quantization_registry.items()]


def get_rope_scaling_schema(type: str = "linear"):
    """One RoPE scaling class. `linear` by default: it is the one the reference example renders
    (with `updates={"type": "linear", "factor": 2.0}`)."""
    return rope_scaling_registry.get(type)


def get_rope_scaling_schemas() -> List[type]:
    return [cls for _, cls in rope_scaling_registry.items()]


def get_model_parameters_schema():
    return ModelParametersConfig


def get_generation_schema():
    return GenerationConfig


def get_trainer_schema(type: str = "finetune"):
    return trainer_registry.get(type)


def get_trainer_schemas() -> List[type]:
    return [cls for _, cls in trainer_registry.items()]


def get_reward_schemas() -> List[type]:
    """The reward types of the `grpo` trainer (`trainer.rewards`)."""
    return [cls for _, cls in reward_registry.items()]


def get_backend_schema(type: str = "ray"):
    return backend_registry.get(type)


def get_backend_schemas() -> List[type]:
    return [cls for _, cls in backend_registry.items()]


def get_strategy_schemas() -> List[type]:
    """The distribution strategies of the Ray backend's training workers (`backend.trainer.strategy`)."""
    return [cls for _, cls in strategy_registry.items()]


def get_input_feature_schema(type: str = "text"):
    return input_feature_registry.get(type)


def get_input_feature_schemas() -> List[type]:
    return [cls for _, cls in input_feature_registry.items()]


def get_chat_templates() -> List[tuple]:
    """(name, class) of each registered chat template (`prompt.chat_template`); a class carries its jinja2 template and end-of-turn marker."""
    return chat_template_registry.items()


def get_output_feature_schema(type: str = "text"):
    return output_feature_registry.get(type)


def get_output_feature_schemas() -> List[type]:
    return [cls for _, cls in output_feature_registry.items()]


def get_category_decoder_schemas() -> List[type]:
    return [cls for _, cls in category_decoder_registry.items()]


def get_preprocessing_schema():
    return PreprocessingConfig


def get_split_schemas() -> List[type]:
    return [cls for _, cls in split_registry.items()]


SECTION_GETTERS = [
    get_llm_schema, get_prompt_schema, get_default_prompt_templates, get_retrieval_schema, get_retrieval_types,
    get_adapter_schemas, get_adapter_schema,
    get_quantization_schema, get_quantization_schemas, get_rope_scaling_schema, get_rope_scaling_schemas,
    get_model_parameters_schema, get_generation_schema, get_trainer_schema, get_trainer_schemas, get_reward_schemas,
    get_backend_schema, get_backend_schemas, get_strategy_schemas, get_input_feature_schema, get_output_feature_schema,
    get_output_feature_schemas, get_category_decoder_schemas, get_preprocessing_schema, get_split_schemas, get_input_feature_schemas, get_chat_templates,
]


# ---------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FieldDoc:
    """One row of a field reference. `default` is the value the loader fills in (None if required)."""

    name: str
    type: str
    description: str
    required: bool
    default: Any
    impact: Impact
    choices: Optional[List[Any]] = None
    range: Optional[str] = None
    example: Any = None
    key: Optional[str] = None  # for a polymorphic section: the key that picks its class

    @property
    def default_yaml(self) -> str:
        return "" if self.required else yaml_inline(self.default)

    @property
    def choices_yaml(self) -> List[str]:
        return [yaml_inline(choice) for choice in self.choices or []]

    @property
    def example_yaml(self) -> str:
        return "" if self.example is None else yaml_inline(self.example)

    @property
    def high_impact(self) -> bool:
        return self.impact >= Impact.HIGH


def schema_class_to_fields(cls, exclude: Iterable[str] = ()) -> List[FieldDoc]:
    """The fields of config class `cls` in display order, internal-only fields left out.

    `name` and `type` come first, then the rest by expected impact (declaration order among
    equals). A nested section is replaced by its own fields under dotted names (`postprocessor.progressbar`),
    kept together at the section's place. `exclude` takes top-level or dotted names; excluding a section
    drops all its fields.
    """
    excluded = set(exclude)
    fields = _fields(cls, prefix="", defaults=class_defaults(cls))
    for field in fields:
        if "." not in field.name and is_required_key(cls, field.name):
            field.required, field.default = True, None
    return [f for f in fields if not _is_excluded(f.name, excluded)]


def _is_excluded(name: str, excluded: set) -> bool:
    parts = name.split(".")
    return any(".".join(parts[: i + 1]) in excluded for i in range(len(parts)))


def _fields(cls, prefix: str, defaults: Dict[str, Any]) -> List[FieldDoc]:
    schema_fields = [(name, field) for name, field in cls.Schema().fields.items() if not field.metadata.get("internal")]
    schema_fields.sort(key=lambda item: _display_rank(item[0], item[1]))
    out: List[FieldDoc] = []
    for name, field in schema_fields:
        dotted = prefix + name
        if isinstance(field, mm.Nested) and name in defaults and defaults[name] is None:
            out.append(_field_doc(dotted, field, defaults))  # an optional section, off (null) by default: one row
        elif isinstance(field, mm.Nested):
            nested_class = CLASS_OF_SCHEMA[type(field.schema)]
            out.extend(_fields(nested_class, dotted + ".", defaults.get(name, {})))
        else:
            out.append(_field_doc(dotted, field, defaults))
    return out


def _display_rank(name: str, field: marshmallow.fields.Field):
    first = {"name": 0, "type": 1}.get(name, 2)
    return first, -int(field.metadata.get("impact", Impact.MEDIUM))


def _field_doc(dotted: str, field: marshmallow.fields.Field, defaults: Dict[str, Any]) -> FieldDoc:
    meta = field.metadata
    name = dotted.rsplit(".", 1)[-1]
    union = field if isinstance(field, TypedUnion) else None
    return FieldDoc(
        name=dotted,
        type=type_label(field),
        description=meta.get("description", ""),
        required=bool(field.required),
        default=None if field.required else defaults.get(name),
        impact=Impact(meta.get("impact", Impact.MEDIUM)),
        choices=union.registry.names() if union else _choices(field),
        range=_range(field),
        example=meta.get("example"),
        key=union.key if union else None,
    )


def _choices(field) -> Optional[List[Any]]:
    # Validators first: a RegistryChoice reads its registry now, so later registrations show up.
    for validator in field.validators:
        if isinstance(validator, Choice):
            return list(validator.choices)
    return field.metadata.get("choices")


def _range(field) -> Optional[str]:
    for validator in field.validators:
        if isinstance(validator, Range):
            return validator.describe()
    bounds = field.metadata.get("range")
    return Range(*bounds).describe() if bounds else None


_SCALAR_NAMES = [(mm.Boolean, "boolean"), (mm.Integer, "integer"), (mm.Float, "number"), (mm.String, "string")]


def type_label(field: marshmallow.fields.Field) -> str:
    """A reader's name for the field's type: `integer`, `list of strings`, `section`, with `or null` when allowed."""
    if getattr(field, "doc_type", None):  # a custom field names its own type
        label = field.doc_type
    elif isinstance(field, TypedUnion):
        label = "section"
    elif isinstance(field, mm.List):
        inner = type_label(field.inner)
        label = f"list of {inner}s" if " " not in inner else f"list of ({inner})"
    elif isinstance(field, mm.Dict):
        label = "mapping"
    elif isinstance(field, mm.Nested):
        label = "section"
    else:
        label = next((name for kind, name in _SCALAR_NAMES if isinstance(field, kind)), "any")
    return f"{label} or null" if field.allow_none else label


# ---------------------------------------------------------------------------------------------
# Defaults and YAML
# ---------------------------------------------------------------------------------------------


def class_defaults(cls) -> Dict[str, Any]:
    """The class's defaults in config form; required fields are absent."""
    return dumped_defaults(cls)


def config_yaml(
    cls,
    parent: Optional[str] = None,
    updates: Optional[Dict[str, Any]] = None,
    in_list: bool = False,
    within: Optional[Dict[str, Any]] = None,
) -> str:
    """YAML of the class's defaults with `updates` merged in, nested under the (dotted) `parent`
    key, optionally as the single item of a list (for `input_features`-style sections).

    `within` holds the keys the enclosing sections need for the block to be pasted as it is, written
    first: `within={"backend": {"type": "ray"}}` for a strategy under `backend.trainer.strategy`.
    """
    data: Any = _merge(class_defaults(cls), dict(updates or {}))
    if in_list:
        data = [data]
    for key in reversed(parent.split(".") if parent else []):
        data = {key: data}
    if within:
        data = _merge(within, data)
    return yaml.dump(data, Dumper=_DocsDumper, sort_keys=False, default_flow_style=False, width=88, allow_unicode=True)


def changed_defaults(cls, updates: Optional[Dict[str, Any]] = None) -> List[Dict[str, str]]:
    """The values of `updates` that differ from the class's defaults, as `{"name", "value", "default"}`
    (dotted names, YAML text): what a page must call an example, so that a reader does not take
    `num_workers: 2` for the default. Required fields have no default and are not listed."""
    out: List[Dict[str, str]] = []
    _collect_changes(class_defaults(cls), dict(updates or {}), "", out)
    return out


def _collect_changes(defaults: Dict[str, Any], updates: Dict[str, Any], prefix: str, out: List[Dict[str, str]]) -> None:
    for key, value in updates.items():
        if key not in defaults:
            continue
        default = defaults[key]
        if isinstance(value, dict) and isinstance(default, dict):
            _collect_changes(default, value, f"{prefix}{key}.", out)
        elif value != default:
            out.append({"name": prefix + key, "value": yaml_inline(value), "default": yaml_inline(default)})


def _merge(base: Dict[str, Any], updates: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def yaml_inline(value: Any) -> str:
    """A value as it would be written in a config, on one line: `null`, `true`, `[q_proj, v_proj]`, `nf4`."""
    text = yaml.dump(value, Dumper=_InlineDumper, default_flow_style=True, width=float("inf"), allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


class _InlineDumper(yaml.SafeDumper):
    """Flow YAML that stays on one line: multi-line strings are double-quoted with `\\n` escapes."""


_InlineDumper.add_representer(
    str, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if "\n" in data else None)
)


class _DocsDumper(yaml.SafeDumper):
    """Config-style YAML: lists indented under their key, short lists of scalars inline, multi-line strings as blocks."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _represent_list(dumper, data):
    inline = all(isinstance(item, (str, int, float, bool, type(None))) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=inline)


def _represent_str(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_DocsDumper.add_representer(list, _represent_list)
_DocsDumper.add_representer(str, _represent_str)
