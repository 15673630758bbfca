"""Rows -> prompt text. Training and prediction both go through `PromptRenderer` and
`model_input_text` (or `prompt_texts`, which chains them), so they always see the same text.

Rendering never calls ``str.format`` on the template: the template is parsed once with the
safety rules of ``schema.template`` (plain names only), and rendering joins its literal pieces
with the values of those names. A row's values are inserted as plain text, so even a value that
looks like a template (``"{__class__}"``) is never interpreted.
"""

from __future__ import annotations

import math
import string
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd

from ludwig_llm.errors import UserError
from ludwig_llm.schema import template as prompt_template


def cell_text(value: Any) -> str:
    """A cell as prompt text: missing values (None, NaN, NA) are empty."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    try:
        if pd.isna(value) is True:
            return ""
    except (TypeError, ValueError):  # lists/arrays: pd.isna answers element-wise
        pass
    return str(value)


class PromptRenderer:
    """Renders the prompt of each row from ``config.prompt`` (template or task) and the input feature.

    ``retriever`` (an object with ``context_for(row) -> str``) fills ``{__context__}``. If it also
    has ``contexts_for(rows: list[Mapping]) -> list[str]``, `render_all` asks for every row's
    context in one call (semantic retrieval then embeds all rows in one batch).
    """

    def __init__(self, config, retriever=None):
        prompt = config.prompt
        self.input_column: str = config.input_feature.column_name()
        self.task: Optional[str] = prompt.task
        self.retriever = retriever
        if prompt.template is not None:
            self.template: str = prompt.template
        else:
            has_context = prompt.retrieval.type is not None
            self.template = prompt_template.default_template(prompt.task is not None, has_context)
        try:
            self.names: List[str] = prompt_template.placeholders(self.template)
        except prompt_template.TemplateError as error:
            raise UserError(f"prompt.template: {error}") from None
        # (literal text, placeholder name or None) pairs: the whole template, parsed once.
        self._pieces: List[Tuple[str, Optional[str]]] = [
            (literal, field) for literal, field, _, _ in string.Formatter().parse(self.template)
        ]

    def template_columns(self) -> List[str]:
        """The dataset columns the template names (reserved names excluded), in order, without repeats."""
        columns: List[str] = []
        for name in self.names:
            if name not in prompt_template.RESERVED and name not in columns:
                columns.append(name)
        return columns

    def reads_input_column(self) -> bool:
        """Whether rendering reads the input feature's column. As in Ludwig, a template that names dataset
        columns (``{instruction}``, ``{input}``) and not ``{__sample__}`` makes the input feature's name only
        a label: its column need not exist."""
        return prompt_template.SAMPLE in self.names or not self.template_columns()

    def input_columns(self) -> Union[str, List[str]]:
        """Where a row's input is: the input feature's column (a name), or the list of the template's columns
        when the template reads the row through them (a row is empty when all of them are)."""
        return self.input_column if self.reads_input_column() else self.template_columns()

    def required_columns(self) -> List[str]:
        """The input column (when read), then every column the template names, without repeats."""
        columns = [self.input_column] if self.reads_input_column() else []
        return columns + [column for column in self.template_columns() if column not in columns]

    def check_columns(self, df: pd.DataFrame, where: str) -> None:
        """UserError naming every column the prompt needs that ``df`` lacks; ``where`` names ``df`` (``"training set 'x.csv'"``)."""
        missing = [column for column in self.required_columns() if column not in df.columns]
        if not missing:
            return
        reasons = [
            f"'{column}' (" + ("the input feature's column" if column == self.input_column else "named in prompt.template") + ")"
            for column in missing
        ]
        raise UserError(
            f"{where} has no column {', '.join(reasons)}; its columns are: {', '.join(map(str, df.columns))}."
        )

    def _values(self, row: Mapping, context: Optional[str]) -> dict:
        values = {}
        for name in self.names:
            if name == prompt_template.SAMPLE:
                values[name] = cell_text(row[self.input_column])
            elif name == prompt_template.TASK:
                values[name] = self.task or ""
            elif name == prompt_template.CONTEXT:
                if context is None:
                    if self.retriever is None:
                        raise ValueError("the prompt template uses {__context__} but PromptRenderer was given no retriever.")
                    context = self.retriever.context_for(row)
                values[name] = cell_text(context)
            else:
                values[name] = cell_text(row[name])
        return values

    def render(self, row: Mapping, context: Optional[str] = None) -> str:
        """The prompt of one row (a dict or a pandas Series). ``context`` overrides the retriever's."""
        values = self._values(row, context)
        return "".join(literal + (values[field] if field is not None else "") for literal, field in self._pieces)

    def render_all(self, df: pd.DataFrame) -> List[str]:
        rows = df.to_dict("records")
        contexts: Sequence[Optional[str]] = [None] * len(rows)
        if prompt_template.CONTEXT in self.names and hasattr(self.retriever, "contexts_for"):
            contexts = self.retriever.contexts_for(rows)
        return [self.render(row, context) for row, context in zip(rows, contexts)]


def model_input_text(prompt: str, tokenizer, apply_chat_template: bool) -> str:
    """The text the model reads for ``prompt``: as is, or as a user message in the tokenizer's chat template."""
    if not apply_chat_template:
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise UserError(
            f"prompt.apply_chat_template is on, but the tokenizer of '{name}' has no chat template; "
            "turn the option off, or use an instruction-tuned model that ships one."
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def prompt_texts(df: pd.DataFrame, tokenizer, config, retriever=None) -> List[str]:
    """Every row's model input text: rendered, then wrapped in the chat template if configured."""
    renderer = PromptRenderer(config, retriever)
    return [model_input_text(p, tokenizer, config.prompt.apply_chat_template) for p in renderer.render_all(df)]
