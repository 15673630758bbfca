"""Errors that the CLI reports as one clear message, without a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List


class UserError(Exception):
    """An error caused by user input (config, data, CLI arguments); printed without traceback by the CLI."""


_NO_VALUE = object()


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
        return f"{where}: {self.message} (got {self.value!r})"


class ConfigValidationError(UserError):
    """Every problem found while validating one config, reported together."""

    def __init__(self, issues: List[ConfigIssue], source: str | None = None):
        self.issues = list(issues)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"Invalid config{f' {self.source}' if self.source else ''}: {len(self.issues)} problem(s)"
        return "\n".join([head] + [f"  - {issue}" for issue in self.issues])
