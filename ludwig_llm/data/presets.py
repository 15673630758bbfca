"""Dataset presets (see `schema.dataset_formats`): alpaca, completion and input/output segments."""

from __future__ import annotations

from typing import List, Optional

from ludwig_llm.data.formats import Piece, RowError, StructuredFormat, cell_is_missing, json_list
from ludwig_llm.data.prompt import cell_text
from ludwig_llm.schema.dataset_formats import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT


def _eos(tokenizer) -> str:
    return tokenizer.eos_token or ""


class AlpacaFormat(StructuredFormat):
    """Alpaca prompt (no loss), then the response and EOS (loss)."""

    def check_row(self, row, *, training: bool) -> None:
        if cell_is_missing(row[self.column]):
            raise RowError(f"column '{self.column}': the instruction is empty.")
        if training and not self.has_output_column(row):
            raise RowError(f"column '{self.target_column}': the response is empty.")

    def prompt(self, row) -> str:
        value = row.get(self.feature.input_column)
        instruction = cell_text(row[self.column])
        if value is None or cell_is_missing(value):
            return ALPACA_PROMPT_NO_INPUT.replace("{instruction}", instruction)
        return ALPACA_PROMPT.replace("{instruction}", instruction).replace("{input}", cell_text(value))

    def pieces(self, row, target: Optional[str], *, for_generation: bool, drop: int = 0) -> Optional[List[Piece]]:
        if drop:
            return None
        pieces = [Piece(self.prompt(row), False, "prompt")]
        if target is not None:
            pieces.append(Piece(target + _eos(self.tokenizer), True, "response"))
        return pieces


class CompletionFormat(StructuredFormat):
    """The whole text and EOS carry loss; prediction continues the text."""

    def check_row(self, row, *, training: bool) -> None:
        if cell_is_missing(row[self.column]):
            raise RowError(f"column '{self.column}': the text is empty.")

    def pieces(self, row, target: Optional[str], *, for_generation: bool, drop: int = 0) -> Optional[List[Piece]]:
        if drop:
            return None
        text = cell_text(row[self.column])
        if for_generation:
            return [Piece(text, False, "text")]
        pieces = [Piece(text + ("" if target is not None else _eos(self.tokenizer)), True, "text")]
        if target is not None:
            pieces.append(Piece(target + _eos(self.tokenizer), True, "continuation"))
        return pieces


class InputOutputFormat(StructuredFormat):
    """Segments as given; `label: true` segments carry loss. The trailing trainable segments are the reference."""

    add_leading_special_tokens = False  # template-free: the segments hold every token the model reads

    def segments(self, row) -> List[dict]:
        try:
            items = json_list(row[self.column], "segments ({text, label})")
        except RowError as error:
            raise RowError(f"column '{self.column}': {error}") from None
        segments = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise RowError(f"column '{self.column}', segment {index}: a segment is an object with a 'text' string and a 'label' boolean.")
            label = item.get("label", False)
            if not isinstance(label, bool):
                raise RowError(f"column '{self.column}', segment {index}: 'label' must be true or false, got {label!r}.")
            segments.append({"text": item["text"], "label": label})
        return segments

    def check_row(self, row, *, training: bool) -> None:
        segments = self.segments(row)
        if training and not self.has_output_column(row) and not any(s["label"] for s in segments):
            raise RowError(f"column '{self.column}': no segment has label: true, so nothing would be trained.")

    def _split(self, row):
        segments = self.segments(row)
        end = len(segments)
        while end > 0 and segments[end - 1]["label"]:
            end -= 1
        return segments[:end], segments[end:]

    def reference(self, row) -> Optional[str]:
        _, answer = self._split(row)
        return "".join(s["text"] for s in answer) if answer else None

    def strip_reference(self, row):
        prompt, _ = self._split(row)
        return {**row, self.column: prompt}

    def pieces(self, row, target: Optional[str], *, for_generation: bool, drop: int = 0) -> Optional[List[Piece]]:
        if drop:
            return None
        pieces = [Piece(s["text"], s["label"], "trained" if s["label"] else "input") for s in self.segments(row)]
        if target is not None:
            pieces.append(Piece(target + _eos(self.tokenizer), True, "output"))
        return pieces
