"""Structured inputs (chat conversations and dataset presets): rows -> labelled text pieces -> tokens.

A `text` input goes through `prompt.PromptRenderer` and `tokenize.encode_for_training`. Every
other input feature type names its implementation in its schema class (``implementation``, a
dotted path to a `StructuredFormat` subclass), which turns a row into *pieces*: texts in order,
each marked as carrying loss or not. Each piece is tokenized on its own and the ids are joined,
so training and generation tokenize a shared prefix identically, and the loss mask falls exactly
on the pieces that carry loss.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Sequence, Tuple

import pandas as pd

from ludwig_llm.data.prompt import cell_text
from ludwig_llm.data.tokenize import IGNORE_INDEX, EncodedRows, _progress_bar, leading_special_ids
from ludwig_llm.errors import UserError
from ludwig_llm.schema.registry import load_implementation

logger = logging.getLogger(__name__)


@dataclass
class Piece:
    """A text span of a row: ``loss`` marks spans the model is trained on; ``label`` names it in the debug view."""

    text: str
    loss: bool
    label: str = ""


class RowError(ValueError):
    """A problem with one row's cell; the caller adds where it is (dataset, row, column)."""


@contextmanager
def row_errors(where: str, position: int):
    """Turns a RowError into a UserError naming the table and the row."""
    try:
        yield
    except RowError as error:
        raise UserError(f"{where}, row {position} (counting from 0), {error}") from None


def structured_format(config, tokenizer=None) -> Optional["StructuredFormat"]:
    """The format object of a non-text input feature (None for `text`), built from the class its schema names."""
    feature_class = type(config.input_feature)
    if not getattr(feature_class, "implementation", None):
        return None
    return load_implementation(feature_class)(config, tokenizer)


def cell_is_missing(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict)) and not hasattr(value, "__array__") and cell_text(value) == ""


def json_list(value: Any, what: str) -> list:
    """A list cell as a Python list: lists and arrays (Parquet, hub datasets) as they are, a JSON string parsed."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(f"the cell is text that is not JSON ({error.msg} at character {error.pos}); it must hold a list of {what}.") from None
    elif hasattr(value, "tolist") and not isinstance(value, dict):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(f"the cell holds {type(value).__name__}, not a list of {what} (or a JSON string of one).")
    return list(value)


class StructuredFormat:
    """Base of the structured input formats; subclasses define `pieces` (and may override `check_row`)."""

    # True: leading special tokens of the tokenizer (BOS) are put before the pieces (chat templates write their own).
    add_leading_special_tokens = True

    def __init__(self, config, tokenizer=None):
        self.config = config
        self.tokenizer = tokenizer
        self.feature = config.input_feature
        self.column = self.feature.column_name()
        self.target_column = config.output_feature.column_name()
        self.max_length = self.feature.preprocessing.max_sequence_length

    # --- what subclasses provide -------------------------------------------------------------

    def pieces(self, row, target: Optional[str], *, for_generation: bool, drop: int = 0) -> Optional[List[Piece]]:
        """The row's pieces: for training (``target`` appended as the answer), or the prompt for generation.
        ``drop`` > 0 asks for a shorter version (the ``drop`` oldest turns left out); None when there is none."""
        raise NotImplementedError

    def reference(self, row) -> Optional[str]:
        """The answer a row carries in its own input cell, used when the output column is absent (None: none)."""
        return None

    def strip_reference(self, row):
        """The row without the answer `reference` found in it (for generation)."""
        return row

    def check_row(self, row, *, training: bool) -> None:
        """Raise RowError for a bad cell."""

    def stop_token_ids(self) -> List[int]:
        return []

    def generation_config(self, generation):
        return generation

    # --- shared machinery ----------------------------------------------------------------------

    def check_columns(self, df: pd.DataFrame, where: str) -> None:
        if self.column not in df.columns:
            raise UserError(f"{where} has no column '{self.column}' (the input feature's column); "
                            f"its columns are: {', '.join(map(str, df.columns))}.")

    def check_table(self, df: pd.DataFrame, where: str, *, training: bool) -> None:
        """Check every row of a source table; the error names the table, row and column."""
        self.check_columns(df, where)
        for position, row in enumerate(df.to_dict("records")):
            with row_errors(where, position):
                self.check_row(row, training=training)

    def target_of(self, row) -> Optional[str]:
        """The answer to train on or compare with: the output column's text, else the one in the input cell."""
        if self.target_column in row and not cell_is_missing(row[self.target_column]):
            return cell_text(row[self.target_column])
        return self.reference(row)

    def has_output_column(self, row) -> bool:
        return self.target_column in row and not cell_is_missing(row[self.target_column])

    def tokenize_pieces(self, pieces: Sequence[Piece]) -> Tuple[List[int], List[int], List[int]]:
        """(input_ids, labels, index of the piece each token came from); leading special tokens belong to no piece (-1)."""
        prefix = leading_special_ids(self.tokenizer) if self.add_leading_special_tokens else []
        texts = [piece.text for piece in pieces]
        encoded = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        ids, labels, owners = list(prefix), [IGNORE_INDEX] * len(prefix), [-1] * len(prefix)
        for index, (piece, piece_ids) in enumerate(zip(pieces, encoded)):
            ids += piece_ids
            labels += list(piece_ids) if piece.loss else [IGNORE_INDEX] * len(piece_ids)
            owners += [index] * len(piece_ids)
        return ids, labels, owners

    def _fit(self, build, limit: Optional[int]):
        """(ids, labels, owners, pieces, turns_dropped, cut): the fullest version of the row within ``limit`` tokens,
        dropping the oldest turns first and cutting tokens from the left only if that is not enough."""
        drop, pieces = 0, build(0)
        ids, labels, owners = self.tokenize_pieces(pieces)
        while limit is not None and len(ids) > limit:
            shorter = build(drop + 1)
            if shorter is None:
                break
            drop, pieces = drop + 1, shorter
            ids, labels, owners = self.tokenize_pieces(pieces)
        cut = limit is not None and len(ids) > limit
        if cut:
            ids, labels, owners = ids[-limit:], labels[-limit:], owners[-limit:]
        return ids, labels, owners, pieces, drop > 0, cut

    def _limit(self, generation: bool) -> Optional[int]:
        global_max = self.config.preprocessing.global_max_sequence_length
        if global_max is not None and generation:
            global_max -= 1  # room for one generated token, as text prompts keep
        limits = [m for m in (self.max_length, global_max) if m is not None]
        return min(limits) if limits else None

    def _encode_training_row(self, row, split: str, position: int):
        with row_errors(f"{split} split", position):
            self.check_row(row, training=True)
            target = self.target_of(row) if self.has_output_column(row) else None
            return self._fit(lambda drop: self.pieces(row, target, for_generation=False, drop=drop), self._limit(False))

    def encode_for_training(self, df: pd.DataFrame, *, split: str = "train", progress: bool = False,
                            description: str = "tokenizing") -> EncodedRows:
        result = EncodedRows()
        stats = result.stats
        bar = _progress_bar(len(df), description, progress)
        for position, row in enumerate(df.to_dict("records")):
            ids, labels, _, _, dropped_turns, cut = self._encode_training_row(row, split, position)
            stats.rows += 1
            if bar is not None:
                bar.update(1)
            if all(label == IGNORE_INDEX for label in labels):
                stats.dropped_rows += 1
                continue
            stats.truncated_turn_rows += dropped_turns
            stats.truncated_prompt_rows += cut
            result.examples.append({"input_ids": ids, "labels": labels})
            result.row_numbers.append(position)
        if bar is not None:
            bar.close()
        if stats.dropped_rows:
            logger.warning("%s: %d row(s) dropped: no token carrying loss was left after truncation.", split, stats.dropped_rows)
        return result

    def _generation_row(self, row):
        return row if self.has_output_column(row) else self.strip_reference(row)

    def encode_prompts(self, df: pd.DataFrame) -> List[List[int]]:
        """Token ids to generate from, one list per row: the row's prompt, with any answer it carries left out."""
        prompts = []
        for position, row in enumerate(df.to_dict("records")):
            with row_errors("dataset", position):
                self.check_row(row, training=False)
                prompt_row = self._generation_row(row)
                ids, *_ = self._fit(lambda drop: self.pieces(prompt_row, None, for_generation=True, drop=drop), self._limit(True))
            prompts.append(ids)
        return prompts

    def targets(self, df: pd.DataFrame, where: str = "dataset") -> List[str]:
        """The reference answer of every row, for evaluation; a UserError names the first row without one."""
        targets = []
        for position, row in enumerate(df.to_dict("records")):
            with row_errors(where, position):
                target = self.target_of(row)
            if target is None:
                raise UserError(f"cannot evaluate: {where}, row {position} (counting from 0) has no reference answer: neither "
                                f"column '{self.target_column}' nor a final answer in column '{self.column}'.")
            targets.append(target)
        return targets

    def encode_for_evaluation(self, df: pd.DataFrame) -> EncodedRows:
        """Training rows built from the generation prompt plus the reference answer (teacher-forced metrics)."""
        rows = []
        for row in df.to_dict("records"):
            answer = self.target_of(row)
            rows.append({**self._generation_row(row), self.target_column: answer})
        return self.encode_for_training(pd.DataFrame(rows), split="evaluation")

    def debug_report(self, df: pd.DataFrame, rows: int = 3) -> str:
        """Each row's pieces (role or part), their tokens, and whether they carry loss."""
        out = []
        for position, row in enumerate(df.head(rows).to_dict("records")):
            out.append(f"=== row {position} " + "=" * 60)
            try:
                ids, labels, owners, pieces, dropped_turns, cut = self._encode_training_row(row, "dataset", position)
            except UserError as error:
                out.append(f"(not trainable: {error})")
                continue
            for index, piece in enumerate(pieces):
                token_ids = [i for i, owner in zip(ids, owners) if owner == index]
                tokens = [json.dumps(self.tokenizer.decode([i]), ensure_ascii=False) for i in token_ids]
                out.append(f"[{piece.label or 'text'}] {'LOSS' if piece.loss else 'no loss'}, {len(token_ids)} tokens: {piece.text!r}")
                out.append("    " + " ".join(tokens))
            loss = sum(label != IGNORE_INDEX for label in labels)
            notes = [f"{len(ids)} tokens, {loss} with loss"]
            notes += ["oldest turns dropped to fit"] * dropped_turns + ["cut from the left to fit"] * cut
            out.append("(" + "; ".join(notes) + ")")
        return "\n".join(out) + "\n"


def with_stop_strings(generation, extra: Sequence[str]):
    """A copy of the generation section with ``extra`` stop strings added."""
    current = list(generation.stop_strings or [])
    added = [s for s in extra if s and s not in current]
    return replace(generation, stop_strings=current + added) if added else generation
