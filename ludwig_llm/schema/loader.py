"""Reading a config: YAML file or dict in, validated config object (or every problem) out."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Union

import marshmallow
import yaml

from ludwig_llm.errors import PREVIEW_CHARS, ConfigIssue, ConfigValidationError, UserError, preview
from ludwig_llm.schema import llm  # noqa: F401  (registers the llm model type)
from ludwig_llm.schema.checks import partial_config, run_checks
from ludwig_llm.schema.registry import model_type_registry


# A config is a few KB; these limits keep a hostile or mistaken file from costing memory and time.
MAX_CONFIG_BYTES = 1024 * 1024
# Values a config holds once YAML aliases are expanded (each mapping, list and scalar counts one).
# Aliases are kept, not refused: anchors and merge keys (`<<: *defaults`) are an ordinary way to share a
# section. What makes an alias bomb ("billion laughs") dangerous is the expanded size, since every later
# step (validation, to_dict, an error message) walks the expanded value; so that size is what is limited,
# counted on the composed node graph before anything is built.
MAX_CONFIG_VALUES = 100_000
# Levels of nested mappings and lists. A config has about five; PyYAML's scanner slows quadratically with
# flow nesting ("[[[[..." of 5000 levels takes a minute) and its composer recurses once per level.
MAX_CONFIG_NESTING = 100


class _NestedTooDeep(Exception):
    pass


class _ConfigYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that stops at MAX_CONFIG_NESTING levels, before the nesting costs time or stack."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass):
        if self.flow_level >= MAX_CONFIG_NESTING:
            raise _NestedTooDeep()
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_NESTING:
                raise _NestedTooDeep()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The mapping in a YAML file, or one clear UserError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror}.") from None
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text (byte {error.start}): is it a YAML file?") from None
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few KB: "
                        "is it the right file?")
    try:
        data = _load_bounded_yaml(text, path)
    except (_NestedTooDeep, RecursionError):
        raise UserError(f"config file {path} nests its values more than {MAX_CONFIG_NESTING} levels deep; "
                        "a config has about five.") from None
    except ValueError as error:  # a scalar YAML recognised but Python cannot build: a 5000-digit int, month 13
        reason = str(error).split(":")[0]
        raise UserError(f"config file {path} holds a value that cannot be read ({reason}).") from None
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


def _load_bounded_yaml(text: str, path) -> Any:
    """``yaml.safe_load(text)``, refusing a document whose aliases expand past MAX_CONFIG_VALUES values."""
    loader = _ConfigYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_CONFIG_VALUES:
            raise UserError(
                f"config file {path} holds more than {MAX_CONFIG_VALUES:,} values once its YAML aliases (*name) are "
                "expanded (an alias bomb?); a config holds a few hundred: write the repeated parts out or use fewer aliases."
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Values in the document once every alias is expanded, computed without expanding it.

    An alias is the same node object reached twice, so memoizing the size per node makes this linear
    in the file while the expanded count can be exponential. The count saturates just past the limit.
    """
    sizes: Dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        sizes[id(node)] = MAX_CONFIG_VALUES + 1  # a node that contains itself (a recursive alias) is over the limit
        for child in children:
            total = min(total + size(child), MAX_CONFIG_VALUES + 1)
        sizes[id(node)] = total
        return total

    return size(root)


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
        # Rules over the sections that are valid still run, so every problem is reported at once.
        issues = flatten_errors(error.messages, data) + run_checks(partial_config(config_class, data))
        raise ConfigValidationError(issues, name) from None
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
        name = _key_text(key)
        sub_path = f"{path}[{key}]" if is_index else (f"{path}.{name}" if path else name)
        if key == "_schema":
            sub_path, child = path, data
        issues.extend(flatten_errors(sub, child, sub_path))
    return issues


_MISSING = object()


def _key_text(key: Any) -> str:
    """A mapping key as a path shows it; a key too long for a path (it is unknown anyway) is previewed."""
    text = str(key) if isinstance(key, (str, int, float, bool)) or key is None else preview(key)
    return text if len(text) <= PREVIEW_CHARS else preview(text)


def _child(data: Any, key: Any) -> Any:
    if isinstance(data, dict):
        return data.get(key, _MISSING)
    if isinstance(data, list) and isinstance(key, int) and key < len(data):
        return data[key]
    return _MISSING


def _plain(message: str) -> str:
    return "required, but missing." if message == "Missing data for required field." else message
