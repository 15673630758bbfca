"""JSON Schema of the config, generated from the same classes that validate it (for editor autocomplete)."""

from __future__ import annotations

from typing import Any, Dict

import marshmallow
from marshmallow import fields as mm

from ludwig_llm.schema.base import CLASS_OF_SCHEMA, dumped_defaults
from ludwig_llm.schema.fields import Choice, Range, TypedUnion
from ludwig_llm.schema.registry import model_type_registry

_SCALARS = {mm.Boolean: "boolean", mm.Integer: "integer", mm.Float: "number", mm.String: "string"}


def config_json_schema(model_type: str = "llm") -> Dict[str, Any]:
    schema = class_json_schema(model_type_registry.get(model_type))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"ludwig_llm {model_type} config"
    return schema


def class_json_schema(config_class) -> Dict[str, Any]:
    schema = config_class.Schema()
    properties = {name: field_json_schema(field) for name, field in schema.fields.items()}
    required = [name for name, field in schema.fields.items() if field.required]
    # Every field's default as the loader fills it in (booleans, lists and sections included); required ones have none.
    for name, value in dumped_defaults(config_class).items():
        if name in properties and name not in required:
            properties[name]["default"] = value
    out: Dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if config_class.description():
        out["description"] = config_class.description()
    if required:
        out["required"] = required
    return out


def field_json_schema(field: marshmallow.fields.Field) -> Dict[str, Any]:
    out = _type_schema(field)
    meta = field.metadata
    if meta.get("description"):
        out["description"] = meta["description"]
    if field.load_default is not marshmallow.missing and not callable(field.load_default):
        out["default"] = field.load_default
    for validator in _validators(field):
        if isinstance(validator, Choice):
            out["enum"] = list(validator.choices)
        elif isinstance(validator, Range):
            target = out["items"] if out.get("type") == "array" and "items" in out else out
            if validator.min is not None:
                target["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
            if validator.max is not None:
                target["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
    if field.allow_none and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"].append(None)
    return out


def _without_default(prop: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in prop.items() if k != "default"}


def _validators(field):
    validate = field.validators if hasattr(field, "validators") else []
    return list(validate or [])


def _type_schema(field: marshmallow.fields.Field) -> Dict[str, Any]:
    if hasattr(field, "json_schema"):  # a custom field that knows its own JSON Schema
        return field.json_schema()
    if isinstance(field, TypedUnion):
        variants = [class_json_schema(config_class) for _, config_class in field.registry.items()]
        if field.default_key_value is None:  # as in the loader: a mapping must name its type (or bits), so no default
            variants = [{**variant, "required": sorted({field.key, *variant.get("required", [])}),
                         "properties": {**variant["properties"], field.key: _without_default(variant["properties"][field.key])}}
                        for variant in variants]
        shorthand = {"enum": field.registry.names()}
        any_of = variants + [shorthand] + ([{"type": "null"}] if field.allow_none else [])
        return {"anyOf": any_of}
    if isinstance(field, mm.Nested):
        return class_json_schema(CLASS_OF_SCHEMA[type(field.schema)])
    if isinstance(field, mm.List):
        return {"type": "array", "items": _type_schema(field.inner) if not isinstance(field.inner, mm.Raw) else {}}
    if isinstance(field, mm.Dict):
        return {"type": "object"}
    for kind, name in _SCALARS.items():
        if isinstance(field, kind):
            return {"type": name}
    return {}
