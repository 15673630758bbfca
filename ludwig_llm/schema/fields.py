"""Field helpers: every config field is built here, with the metadata that validation and the docs share.

A field's metadata (description, allowed values, range, example, expected impact, internal flag)
is stored in the marshmallow field's ``metadata`` so that the docs, the JSON Schema and the error
messages all read the same source.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import Any, Callable, Dict, List, Optional, Sequence

import marshmallow
from marshmallow import ValidationError

from ludwig_llm.errors import preview
from ludwig_llm.schema.registry import Registry, did_you_mean


class Impact(IntEnum):
    """How much a field tends to change results; the docs sort by it and badge the high ones."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class Choice(marshmallow.validate.Validator):
    """Allowed values, with a 'did you mean' suggestion for a near miss."""

    def __init__(self, choices: Sequence[Any]):
        self.choices = list(choices)

    def __call__(self, value: Any) -> Any:
        if value not in self.choices:
            shown = ", ".join(repr(c) for c in self.choices)
            names = [c for c in self.choices if c is not None]
            raise ValidationError(f"{preview(value)} is not one of {shown}.{did_you_mean(value, names)}")
        return value


class RegistryChoice(Choice):
    """Allowed values read from a registry at validation time, so a newly registered name is accepted."""

    def __init__(self, registry: Registry, allow_none: bool = False):
        self.registry = registry
        self.allow_none = allow_none

    @property
    def choices(self) -> List[Any]:  # type: ignore[override]
        return ([None] if self.allow_none else []) + self.registry.names()


class Range(marshmallow.validate.Validator):
    """Numeric range; each bound may be inclusive or exclusive. Applied to list items too."""

    def __init__(self, min=None, max=None, min_inclusive=True, max_inclusive=True):
        self.min, self.max = min, max
        self.min_inclusive, self.max_inclusive = min_inclusive, max_inclusive

    def describe(self) -> str:
        low = "" if self.min is None else f"{self.min} {'<=' if self.min_inclusive else '<'} "
        high = "" if self.max is None else f" {'<=' if self.max_inclusive else '<'} {self.max}"
        return f"{low}value{high}"

    def __call__(self, value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            too_low = self.min is not None and (item < self.min if self.min_inclusive else item <= self.min)
            too_high = self.max is not None and (item > self.max if self.max_inclusive else item >= self.max)
            if too_low or too_high:
                raise ValidationError(f"{preview(item)} is out of range: must satisfy {self.describe()}.")
        return value


class StrictBoolean(marshmallow.fields.Boolean):
    """true or false only: marshmallow's Boolean also takes "yes", "on", "t", 1 and "1"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _metadata(description: str, impact: Impact, example: Any, internal: bool, **extra) -> Dict[str, Any]:
    if not description or not description.strip():
        raise ValueError("every config field needs a description: it is the documentation")
    return {"description": description.strip(), "impact": impact, "example": example, "internal": internal, **extra}


def option(
    default: Any,
    description: str,
    *,
    choices: Optional[Sequence[Any]] = None,
    min: Optional[float] = None,
    max: Optional[float] = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    example: Any = None,
    impact: Impact = Impact.MEDIUM,
    internal: bool = False,
    validate: Optional[Callable[[Any], Any]] = None,
) -> Any:
    """A config field with a default. The type comes from the dataclass annotation.

    The default is checked against ``choices``/range here, at class definition time, so a class
    whose documented default breaks its own rule cannot even be imported.
    """
    validators: List[Callable[[Any], Any]] = []
    if choices is not None:
        validators.append(choices if isinstance(choices, Choice) else Choice(choices))
    if min is not None or max is not None:
        validators.append(Range(min, max, min_inclusive, max_inclusive))
    if validate is not None:
        validators.append(validate)
    for check in validators:
        if default is not None:
            check(default)
    meta = _metadata(
        description, impact, example, internal,
        choices=list(choices.choices if isinstance(choices, Choice) else choices) if choices is not None else None,
        range=(min, max, min_inclusive, max_inclusive) if (min is not None or max is not None) else None,
    )
    mm_kwargs: Dict[str, Any] = {"metadata": meta}
    if validators:
        mm_kwargs["validate"] = validators
    if isinstance(default, bool):
        return dataclasses.field(default=default, metadata={"marshmallow_field": StrictBoolean(**mm_kwargs)})
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=mm_kwargs)
    return dataclasses.field(default=default, metadata=mm_kwargs)


def required(description: str, *, example: Any = None, impact: Impact = Impact.HIGH, validate=None) -> Any:
    """A field the user must give (no default)."""
    mm_kwargs: Dict[str, Any] = {"metadata": _metadata(description, impact, example, False), "required": True}
    if validate is not None:
        mm_kwargs["validate"] = validate
    return dataclasses.field(metadata=mm_kwargs)


def nested(config_class: type, description: str, *, impact: Impact = Impact.MEDIUM) -> Any:
    """A sub-section whose default is the sub-class's own defaults."""
    return dataclasses.field(
        default_factory=config_class,
        metadata={"metadata": _metadata(description, impact, None, False)},
    )


class TypedUnion(marshmallow.fields.Field):
    """A section whose class is chosen from a registry by one key (``type``, or ``bits``).

    A bare value is shorthand for a mapping with only that key: ``adapter: lora`` is
    ``adapter: {type: lora}``.
    """

    def __init__(self, registry: Registry, key: str = "type", default_key_value: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.registry = registry
        self.key = key
        self.default_key_value = default_key_value

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = {self.key: value}
        if not isinstance(value, dict):
            raise ValidationError(
                f"expected a mapping with a '{self.key}' key or a bare {self.key} "
                f"(one of {', '.join(repr(n) for n in self.registry.names())})."
            )
        if self.key not in value:
            if self.default_key_value is None:
                # Without the type the section's class is unknown; keys no registered class has are still reported.
                known = {f.data_key or name for _, cls in self.registry.items() for name, f in cls.Schema().load_fields.items()}
                unknown = {key: [f"unknown key for every {self.registry.kind}.{did_you_mean(key, sorted(known))}"]
                           for key in value if key not in known}
                raise ValidationError(
                    {self.key: [f"required, but missing; set it to one of {', '.join(map(repr, self.registry.names()))}."],
                     **unknown}
                )
            value = {self.key: self.default_key_value, **value}
        if value[self.key] not in self.registry:
            raise ValidationError({self.key: [self.registry.unknown_message(value[self.key])]})
        return self.registry.get(value[self.key]).Schema().load(value)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.to_dict()


def typed_union(
    registry: Registry,
    default: Any,
    description: str,
    *,
    key: str = "type",
    default_key_value: Any = None,
    impact: Impact = Impact.HIGH,
) -> Any:
    """A registry-polymorphic section; ``default`` is None, or a config class whose defaults apply."""
    field = TypedUnion(
        registry,
        key=key,
        default_key_value=default_key_value,
        allow_none=default is None,
        metadata=_metadata(description, impact, None, False, registry=registry, key=key),
    )
    if default is None:
        return dataclasses.field(default=None, metadata={"marshmallow_field": field})
    return dataclasses.field(default_factory=default, metadata={"marshmallow_field": field})


def typed_union_list(registry: Registry, description: str, *, example: Any = None) -> Any:
    """A required list of registry-polymorphic entries (the input and output features)."""
    meta = _metadata(description, Impact.HIGH, example, False, registry=registry, key="type")
    field = marshmallow.fields.List(TypedUnion(registry), required=True, metadata=meta)
    return dataclasses.field(metadata={"marshmallow_field": field})
