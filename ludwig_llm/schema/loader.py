"""Reading a config: YAML file or dict in, validated config object (or every problem) out."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Union

import marshmallow
import yaml

from ludwig_llm.errors import ConfigIssue, ConfigValidationError, UserError
from ludwig_llm.schema import llm  # noqa: F401  (registers the llm model type)
from ludwig_llm.schema.checks import run_checks
from ludwig_llm.schema.registry import model_type_registry


def read_yaml(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The mapping in a YAML file, or one clear UserError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror}.") from None
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text (byte {error.start}): is it a YAML file?") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        if context and problem.startswith("but "):  # e.g. "expected a single document in the stream, but found another document"
            problem = f"{context}, {problem}"
        raise UserError(f"config file {path} is not valid YAML{where}: {problem}.") from None
    if data is None:
        raise UserError(f"config file {path} is empty.")
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of settings (key: value), not a {type(data).__name__}.")
    return data


def load_config(source: Union[str, os.PathLike, Dict[str, Any]]):
    """Validate a config (a path to YAML, or a dict) and return it with every default filled in.

    Raises ConfigValidationError listing every problem, each with its config path.
    """
    name = None if isinstance(source, dict) else str(source)
    data = source if isinstance(source, dict) else read_yaml(source)
    model_type = data.get("model_type", "llm")
    if model_type not in model_type_registry:
        raise ConfigValidationError([ConfigIssue("model_type", model_type_registry.unknown_message(model_type), model_type)], name)
    config_class = model_type_registry.get(model_type)
    try:
        config = config_class.from_dict(data)
    except marshmallow.ValidationError as error:
        raise ConfigValidationError(flatten_errors(error.messages, data), name) from None
    issues = run_checks(config)
    if issues:
        raise ConfigValidationError(issues, name)
    return config


def flatten_errors(messages: Any, data: Any, path: str = "") -> List[ConfigIssue]:
    """marshmallow's nested error dict -> one issue per message, with `a.b[0].c` paths and the offending value."""
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        value = data if data is not _MISSING else None
        return [ConfigIssue(path, _plain(m), value) if data is not _MISSING else ConfigIssue(path, _plain(m)) for m in messages]
    if isinstance(messages, str):
        return flatten_errors([messages], data, path)
    issues: List[ConfigIssue] = []
    items = messages.items() if isinstance(messages, dict) else enumerate(messages)
    for key, sub in items:
        child = _child(data, key)
        is_index = isinstance(key, int) and not isinstance(data, dict)  # a list position, not a (numeric) mapping key
        sub_path = f"{path}[{key}]" if is_index else (f"{path}.{key}" if path else str(key))
        if key == "_schema":
            sub_path, child = path, data
        issues.extend(flatten_errors(sub, child, sub_path))
    return issues


_MISSING = object()


def _child(data: Any, key: Any) -> Any:
    if isinstance(data, dict):
        return data.get(key, _MISSING)
    if isinstance(data, list) and isinstance(key, int) and key < len(data):
        return data[key]
    return _MISSING


def _plain(message: str) -> str:
    return "required, but missing." if message == "Missing data for required field." else message
