"""Prompt templates: parsing and the safety rules shared by validation and rendering.

Templates use Python's ``{name}`` placeholder syntax, but only plain names: attribute access
(``{x.__class__}``), indexing (``{x[0]}``), positions (``{0}``), conversions and format specs are
refused, so a config cannot reach into objects or run code. A name is a column name and may hold
spaces and dashes, as Ludwig's tabular templates do (``{Recency -- months since last donation}``):
rendering looks the name up in the row and never calls ``str.format``.
"""

from __future__ import annotations

import re
import string
from typing import List

# `x.y.z`: attribute access to str.format, even though rendering never calls it (a column named in words may have dots)
ATTRIBUTE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")

SAMPLE = "__sample__"
TASK = "__task__"
CONTEXT = "__context__"
RESERVED = (SAMPLE, TASK, CONTEXT)

DEFAULT_TEMPLATE = "{__sample__}"
DEFAULT_TASK_TEMPLATE = "Task: {__task__}\n\nInput: {__sample__}\n\nResponse:"
DEFAULT_CONTEXT_TEMPLATE = "{__context__}\n\nInput: {__sample__}\n\nResponse:"
DEFAULT_TASK_CONTEXT_TEMPLATE = (
    "Task: {__task__}\n\nExamples:\n\n{__context__}\n\nInput: {__sample__}\n\nResponse:"
)


class TemplateError(ValueError):
    """A template that does not parse or breaks a safety rule."""


def placeholders(template: str) -> List[str]:
    """Names used in ``template``, in order; raises TemplateError for anything but plain names."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise TemplateError(f"template does not parse: {error}. Write a literal brace as '{{{{' or '}}}}'.") from None
    names = []
    for _, field, format_spec, conversion in parsed:
        if field is None:
            continue
        if not field:
            raise TemplateError("empty placeholder '{}': name the column, e.g. '{__sample__}'.")
        if "[" in field or "]" in field or field.isdigit() or ATTRIBUTE_PATH.fullmatch(field) or "._" in field:
            raise TemplateError(
                f"placeholder '{{{field}}}' is not a plain name: attribute access, indexing and positions are not allowed."
            )
        if format_spec or conversion:
            raise TemplateError(f"placeholder '{{{field}}}' has a conversion or format spec, which is not allowed.")
        names.append(field)
    return names


def default_template(has_task: bool, has_context: bool) -> str:
    if has_task and has_context:
        return DEFAULT_TASK_CONTEXT_TEMPLATE
    if has_task:
        return DEFAULT_TASK_TEMPLATE
    if has_context:
        return DEFAULT_CONTEXT_TEMPLATE
    return DEFAULT_TEMPLATE
