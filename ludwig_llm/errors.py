"""Errors that the CLI reports as one clear message, without a traceback."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, List


class UserError(Exception):
    """An error caused by user input (config, data, CLI arguments); printed without traceback by the CLI."""


_NO_VALUE = object()

PREVIEW_CHARS = 80


class _Preview(reprlib.Repr):
    def repr_int(self, x, level):
        if x.bit_length() > 1024:  # repr of a huge int is slow, and fails past 4300 digits
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


# reprlib stops walking a value at a few items per level, so the cost and the length of a preview are
# bounded whatever the value's size (a YAML alias bomb expands to millions of items).
_PREVIEW = _Preview()
_PREVIEW.maxstring = _PREVIEW.maxother = _PREVIEW.maxlong = PREVIEW_CHARS - 20
_PREVIEW.maxlist = _PREVIEW.maxtuple = _PREVIEW.maxdict = _PREVIEW.maxset = 6
_PREVIEW.maxlevel = 3


def preview(value: Any) -> str:
    """``repr(value)`` cut to about 80 characters: what an error message echoes of a user's value."""
    text = _PREVIEW.repr(value)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config: where it is, what was there, and which rule it breaks."""

    path: str
    message: str
    value: Any = _NO_VALUE

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.value is _NO_VALUE:
            return f"{where}: {self.message}"
        return f"{where}: {self.message} (got {preview(self.value)})"


class ConfigValidationError(UserError):
    """Every problem found while validating one config, reported together."""

    def __init__(self, issues: List[ConfigIssue], source: str | None = None):
        self.issues = list(issues)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"Invalid config{f' {self.source}' if self.source else ''}: {len(self.issues)} problem(s)"
        return "\n".join([head] + [f"  - {issue}" for issue in self.issues])
