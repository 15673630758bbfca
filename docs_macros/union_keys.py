"""Which keys of a config class the user must write although the class gives them a default.

A registry-polymorphic section (`trainer`, `quantization`, each feature) is read by a TypedUnion
field, which looks at the key (`type`, `bits`) before it knows the class. Each class declares that
key with its own value as default, so that `render_yaml` writes it; whether a user may leave it out
is decided by the sections' TypedUnion fields, which this module reads.
"""

from __future__ import annotations

from typing import Dict, List

from marshmallow import fields as mm

from ludwig_llm.schema.base import CLASS_OF_SCHEMA
from ludwig_llm.schema.fields import TypedUnion


def is_required_key(cls, name: str) -> bool:
    """Whether `name` is the key that picks `cls` out of its registry, and every section that can hold
    `cls` refuses a mapping without it (`trainer: {epochs: 3}`)."""
    unions = [u for u in _all_unions() if u.key == name and any(c is cls for _, c in u.registry.items())]
    return bool(unions) and all(u.default_key_value is None for u in unions)


def _all_unions() -> List[TypedUnion]:
    unions = []
    for config_cls in list(CLASS_OF_SCHEMA.values()):
        unions.extend(_unions_of(config_cls))
    return unions


# A class's fields never change; building its Schema for every field list of every page would.
_UNIONS: Dict[type, List[TypedUnion]] = {}


def _unions_of(config_cls) -> List[TypedUnion]:
    if config_cls not in _UNIONS:
        found = []
        for field in config_cls.Schema().fields.values():
            inner = field.inner if isinstance(field, mm.List) else field
            if isinstance(inner, TypedUnion):
                found.append(inner)
        _UNIONS[config_cls] = found
    return _UNIONS[config_cls]
