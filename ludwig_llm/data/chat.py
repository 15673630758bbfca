"""Conversations: parse a cell into turns, render them with a chat template, and mark assistant turns for loss.

The loss mask comes from rendering prefixes of the conversation (the text of the first k turns
is a prefix of the text of k+1 turns for every registered template and for ChatML-style model
templates), so it is exact for any such template without `{% generation %}` markers: each turn's
text is the difference of two renders, and within an assistant turn the loss covers its content
and everything up to the end-of-turn marker (the turn's text after the content, whitespace
trimmed), never the role header before it or the newline after it. A template that does not
render turn by turn but marks assistant text with `{% generation %}` gets the spans it marks
(transformers' assistant mask); any other such template is refused.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from jinja2.exceptions import TemplateError
from transformers.utils.chat_template_utils import render_jinja_template

from ludwig_llm.data.formats import Piece, RowError, StructuredFormat, cell_is_missing, json_list, with_stop_strings
from ludwig_llm.errors import UserError
from ludwig_llm.schema.registry import chat_template_registry

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
_PROBE = "\u2063PROBE\u2063"  # text no template changes, to find what a template puts after an assistant turn's content


class _NotIncremental(Exception):
    """The template's text of k turns is not a prefix of its text of k+1 turns."""


def parse_turns(value: Any, column: str) -> List[Dict[str, str]]:
    """A cell as OpenAI-style turns ``[{"role", "content"}]``; ShareGPT ``{from, value}`` turns are recognised and mapped."""
    if cell_is_missing(value):
        raise RowError(f"column '{column}': the cell is empty; it must hold a list of turns.")
    try:
        items = json_list(value, "turns ({role, content} or {from, value})")
    except RowError as error:
        raise RowError(f"column '{column}': {error}") from None
    turns = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise RowError(f"column '{column}', turn {index}: a turn must be an object with role/content or from/value, "
                           f"got {type(item).__name__}.")
        if "role" in item:
            role, content, known = item["role"], item.get("content"), ROLES
        elif "from" in item:
            role, content, known = SHAREGPT_ROLES.get(item["from"], item["from"]), item.get("value"), tuple(SHAREGPT_ROLES)
            if item["from"] not in SHAREGPT_ROLES:
                role = None
        else:
            raise RowError(f"column '{column}', turn {index}: the turn has neither 'role' (OpenAI) nor 'from' (ShareGPT); "
                           f"its keys are: {', '.join(map(str, item))}.")
        if role not in ROLES:
            raw = item.get("role", item.get("from"))
            raise RowError(f"column '{column}', turn {index}: unknown role {raw!r}; known: {', '.join(known)}.")
        if not isinstance(content, str) or not content.strip():
            raise RowError(f"column '{column}', turn {index} ({role}): the turn has no content.")
        turns.append({"role": role, "content": content})
    if not turns:
        raise RowError(f"column '{column}': the conversation has no turns.")
    return turns


def template_text(config, tokenizer) -> str:
    """The jinja2 chat template: the one `prompt.chat_template` names, else the tokenizer's own."""
    name = config.prompt.chat_template
    if name is not None:
        return chat_template_registry.get(name).template
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # tokenizers that ship several templates name the main one "default"
        own = own.get("default")
    if not own:
        model = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise UserError(f"the base model '{model}' has no chat template of its own, so conversations cannot be rendered: "
                        f"set prompt.chat_template to one of {', '.join(map(str, chat_template_registry.names()))}.")
    return own


class ChatFormat(StructuredFormat):
    """The `chat` input feature's implementation (see `schema.chat.ChatInputFeatureConfig`)."""

    add_leading_special_tokens = False  # templates write their own BOS

    def __init__(self, config, tokenizer=None):
        super().__init__(config, tokenizer)
        self.system = config.prompt.task
        self.last_turn_only = self.feature.preprocessing.train_on_last_turn_only
        self._template: Optional[str] = None

    # --- rows -> turns -------------------------------------------------------------------------

    def turns(self, row) -> List[Dict[str, str]]:
        turns = parse_turns(row[self.column], self.column)
        if self.system is not None and turns[0]["role"] != "system":
            turns = [{"role": "system", "content": self.system}] + turns
        return turns

    def check_row(self, row, *, training: bool) -> None:
        turns = self.turns(row)
        has_output = self.has_output_column(row)
        if has_output and turns[-1]["role"] == "assistant":
            raise RowError(f"column '{self.column}': the conversation ends with an assistant turn and column "
                           f"'{self.target_column}' holds another final answer; keep one of them.")
        if training and not has_output and not any(turn["role"] == "assistant" for turn in turns):
            raise RowError(f"column '{self.column}': a training conversation needs an assistant turn to learn from, and "
                           f"this one has none (and column '{self.target_column}' gives no final answer).")

    def reference(self, row) -> Optional[str]:
        turns = parse_turns(row[self.column], self.column)
        return turns[-1]["content"] if turns[-1]["role"] == "assistant" else None

    def strip_reference(self, row):
        turns = parse_turns(row[self.column], self.column)
        if turns[-1]["role"] != "assistant":
            return row
        return {**row, self.column: turns[:-1]}

    # --- rendering -----------------------------------------------------------------------------

    @property
    def template(self) -> str:
        if self._template is None:
            self._template = template_text(self.config, self.tokenizer)
        return self._template

    def render(self, turns: List[Dict[str, str]], generation_prompt: bool = False) -> str:
        if not turns:  # transformers renders no empty conversation; its text (a BOS, if any) goes with the first turn
            return ""
        try:
            return self.tokenizer.apply_chat_template(turns, chat_template=self.template, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except TemplateError as error:
            raise RowError(f"column '{self.column}': the chat template cannot render this conversation: {error}") from None

    def turn_pieces(self, turns: List[Dict[str, str]], generation_prompt: bool) -> List[Piece]:
        """Pieces of the rendered conversation; assistant turns carry loss on content + end-of-turn marker."""
        try:
            return self._incremental_pieces(turns, generation_prompt)
        except _NotIncremental:
            if "{% generation %}" not in self.template and "{%- generation %}" not in self.template:
                raise RowError(f"column '{self.column}': the chat template does not render the conversation turn by turn "
                               "(an earlier turn's text changes when a turn is added) and marks no {% generation %} blocks, "
                               "so the loss mask cannot be found; set prompt.chat_template to a registered template.") from None
            return self._generation_block_pieces(turns, generation_prompt)

    def _generation_block_pieces(self, turns: List[Dict[str, str]], generation_prompt: bool) -> List[Piece]:
        """Pieces from the character spans a template marks with `{% generation %}` (transformers' assistant mask)."""
        try:
            rendered, spans = render_jinja_template([turns], chat_template=self.template, return_assistant_tokens_mask=True,
                                                    add_generation_prompt=generation_prompt, **self.tokenizer.special_tokens_map)
        except TemplateError as error:
            raise RowError(f"column '{self.column}': the chat template cannot render this conversation: {error}") from None
        text, pieces, position = rendered[0], [], 0
        marked = sorted(spans[0])
        if self.last_turn_only:
            marked = marked[-1:]
        for start, end in marked:
            if start > position:
                pieces.append(Piece(text[position:start], False, "template"))
            pieces.append(Piece(text[start:end], True, "assistant"))
            position = end
        if position < len(text):
            pieces.append(Piece(text[position:], False, "template"))
        return pieces

    def _incremental_pieces(self, turns: List[Dict[str, str]], generation_prompt: bool) -> List[Piece]:
        last_assistant = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=-1)
        pieces: List[Piece] = []
        rendered = self.render([])
        if rendered:
            pieces.append(Piece(rendered, False, "template"))
        for index, turn in enumerate(turns):
            following = self.render(turns[:index + 1])
            if not following.startswith(rendered):
                raise _NotIncremental()
            text = following[len(rendered):]
            if turn["role"] == "assistant":
                pieces += self._assistant_pieces(turns[:index], text, turn["content"], index == last_assistant or not self.last_turn_only)
            elif text:
                pieces.append(Piece(text, False, turn["role"]))
            rendered = following
        if generation_prompt:
            with_prompt = self.render(turns, generation_prompt=True)
            if len(with_prompt) > len(rendered) and with_prompt.startswith(rendered):
                pieces.append(Piece(with_prompt[len(rendered):], False, "assistant header"))
        return pieces

    def _assistant_pieces(self, before: List[Dict[str, str]], text: str, content: str, loss: bool) -> List[Piece]:
        header = self.render(before, generation_prompt=True)[len(self.render(before)):] if before else ""
        start = text.find(content, len(header) if text.startswith(header) else 0)
        if start < 0:
            start = text.find(content.strip())
            content = content.strip()
        if start < 0:
            raise RowError(f"column '{self.column}': the chat template changes an assistant turn's text, so its tokens cannot be found.")
        end = len(text.rstrip())
        pieces = [Piece(text[:start], False, "assistant header"), Piece(text[start:end], loss, "assistant"), Piece(text[end:], False, "template")]
        return [piece for piece in pieces if piece.text]

    def pieces(self, row, target: Optional[str], *, for_generation: bool, drop: int = 0) -> Optional[List[Piece]]:
        turns = self.turns(row)
        if target is not None:
            turns = turns + [{"role": "assistant", "content": target}]
        if drop:
            turns = self._drop_oldest_exchanges(turns, drop)
            if turns is None:
                return None
        return self.turn_pieces(turns, generation_prompt=for_generation)

    @staticmethod
    def _drop_oldest_exchanges(turns: List[Dict[str, str]], count: int) -> Optional[List[Dict[str, str]]]:
        """``turns`` without its ``count`` oldest exchanges (a user turn and the turns up to the next user turn),
        keeping a leading system message; None when that would leave no exchange."""
        system = turns[:1] if turns[0]["role"] == "system" else []
        rest = turns[len(system):]
        starts = [i for i, turn in enumerate(rest) if turn["role"] == "user" and i > 0]
        if count > len(starts):
            return None
        return system + rest[starts[count - 1]:]

    # --- generation ----------------------------------------------------------------------------

    def end_of_turn(self) -> str:
        """What the template writes after an assistant turn's content, whitespace trimmed (e.g. ``<|im_end|>``)."""
        turns = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
        text = self.render(turns)
        return text[text.rfind(_PROBE) + len(_PROBE):].strip()

    def stop_token_ids(self) -> List[int]:
        marker = self.end_of_turn()
        ids = self.tokenizer(marker, add_special_tokens=False)["input_ids"] if marker else []
        return list(ids) if len(ids) == 1 else []

    def generation_config(self, generation):
        marker = self.end_of_turn()
        return generation if not marker or self.stop_token_ids() else with_stop_strings(generation, [marker])
