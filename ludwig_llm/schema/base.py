"""The base of every config class: load with defaults filled, dump back, refuse unknown keys."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar, Dict

import marshmallow
import marshmallow_dataclass

from ludwig_llm.schema.registry import did_you_mean


class WholeInteger(marshmallow.fields.Integer):
    """An ``int`` field that refuses ``2.5`` (marshmallow's default silently truncates it to 2)."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)


class StrictSchema(marshmallow.Schema):
    """Refuses keys the class does not declare, naming the closest known key.

    marshmallow's own RAISE says only "Unknown field."; we EXCLUDE there and raise our own
    message from a schema validator that still runs when other fields failed, so that all
    problems are reported together.
    """

    TYPE_MAPPING = {**marshmallow.Schema.TYPE_MAPPING, int: WholeInteger}

    class Meta:
        unknown = marshmallow.EXCLUDE

    def _invoke_load_processors(self, tag, data, *, many, **kwargs):
        result = super()._invoke_load_processors(tag, data, many=many, **kwargs)
        if tag == marshmallow.decorators.PRE_LOAD:
            self._pre_loaded = result  # keys the class's pre_load hooks mapped (Ludwig's spellings) are known keys
        return result

    @marshmallow.validates_schema(pass_original=True, skip_on_field_errors=False)
    def _refuse_unknown_keys(self, data, original_data, **kwargs):
        original_data = getattr(self, "_pre_loaded", original_data)
        if not isinstance(original_data, dict):
            return
        known = [f.data_key or name for name, f in self.load_fields.items()]
        ludwig_only = getattr(CLASS_OF_SCHEMA.get(type(self)), "ludwig_only_keys", {})
        unknown = {
            key: [f"Ludwig's '{key}', not read here: {ludwig_only[key]}" if key in ludwig_only else
                  f"unknown key.{did_you_mean(key, known) or ' Known keys: ' + ', '.join(known) + '.'}"]
            for key in original_data
            if key not in known
        }
        if unknown:
            raise marshmallow.ValidationError(unknown)


def config_class(cls):
    """Decorator for config classes: a marshmallow dataclass whose defaults are checked at import."""
    cls = marshmallow_dataclass.dataclass(cls, base_schema=StrictSchema)
    _check_defaults(cls)
    CLASS_OF_SCHEMA[cls.Schema] = cls
    return cls


# Nested marshmallow fields know only their schema; this leads back to the config class (docs, JSON Schema).
CLASS_OF_SCHEMA: Dict[type, type] = {}


def dumped_defaults(cls) -> Dict[str, Any]:
    """The class's defaults in config form (as `to_dict()` writes them); required fields are absent.

    Built from the dataclass defaults rather than by loading, because a class with required fields
    (features need a `name`) cannot be loaded from an empty mapping; marshmallow's dump skips the
    attributes the object lacks, which keeps required fields out.
    """
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return cls.Schema().dump(_Attrs(defaults))


def _check_defaults(cls) -> None:
    schema = cls.Schema()
    errors = schema.validate(dumped_defaults(cls), partial=True)
    if errors:
        raise TypeError(f"{cls.__name__} has defaults that break its own rules: {errors}")


class _Attrs:
    def __init__(self, values: Dict[str, Any]):
        self.__dict__.update(values)


class Documented:
    """``name()`` and ``description()``: what the docs and the CLI show for a class (``title``
    overrides the class name, the class docstring is the description). Every registered class has them,
    config sections and plain registry entries (retrieval types) alike."""

    title: ClassVar[str] = ""

    @classmethod
    def name(cls) -> str:
        return cls.title or cls.__name__

    @classmethod
    def description(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")


class BaseConfig(Documented):
    """Base of all config sections.

    ``name()`` and ``description()`` come from ``Documented`` so that every section has them.
    """

    Schema: ClassVar[type]

    @classmethod
    def from_dict(cls, data: Dict[str, Any]):
        """Validate ``data`` and return the config with every default filled in."""
        return cls.Schema().load(data)

    def to_dict(self) -> Dict[str, Any]:
        return self.Schema().dump(self)
