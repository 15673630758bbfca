"""The CLI reference, generated from the argparse parser the `ludwig_llm` command itself uses."""

from __future__ import annotations

import argparse
import html
import re
from typing import Dict, List

from ludwig_llm.cli import build_parser


def subcommands(parser: argparse.ArgumentParser = None) -> Dict[str, argparse.ArgumentParser]:
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _subcommand_help(parser: argparse.ArgumentParser) -> Dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def table_cell(text: str) -> str:
    """A table cell showing `text` as written. Help texts are plain text: outside `code` spans, `<run>`
    would be taken for an HTML tag (and vanish) and `__x__` for bold, so those characters are escaped."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    shown = [part if part.startswith("`") else _escape_markdown(part) for part in parts]
    return "".join(shown).replace("|", "\\|")


def _escape_markdown(text: str) -> str:
    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(text, quote=False))


def _argument_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
    if action.nargs == "?" and action.option_strings:
        names += f" `[{action.metavar or action.dest.upper()}]`"
    if action.required:
        default = "required"
    elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        default = "off (flag)"
    elif action.default is None or action.default is argparse.SUPPRESS:
        default = "–"
    else:
        default = f"`{action.default}`"
    help_text = action.help or ""
    if action.choices:
        help_text += " Choices: " + ", ".join(f"`{choice}`" for choice in action.choices) + "."
    if action.nargs == "?" and action.const is not None:
        help_text += f" Given without a value: `{action.const}`."
    return f"| {names} | {default} | {table_cell(help_text.strip())} |"


def _arguments(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    # -h/--help is on every command; the page says so once instead of in every table.
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def cli_reference(heading_level: int = 2) -> str:
    """Markdown: one section per subcommand with its usage line and a table of every argument."""
    parser = build_parser()
    helps = _subcommand_help(parser)
    hashes = "#" * heading_level
    parts = []
    for name, sub in subcommands(parser).items():
        parts.append(f"{hashes} `{name}`\n")
        parts.append(f"{helps.get(name, '')}\n")
        parts.append("```text\n" + sub.format_usage().replace("usage: ", "", 1).strip() + "\n```\n")
        parts.append("| Argument | Default | Description |\n| --- | --- | --- |")
        parts.extend(_argument_row(action) for action in _arguments(sub))
        parts.append("")
    return "\n".join(parts)


def cli_global_options() -> str:
    """Markdown table of the options of `ludwig_llm` itself (before the subcommand)."""
    rows = [_argument_row(action) for action in _arguments(build_parser())]
    return "\n".join(["| Argument | Default | Description |", "| --- | --- | --- |", *rows])
