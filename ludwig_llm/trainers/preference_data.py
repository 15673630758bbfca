"""Preference rows from a split's table: checked, then encoded as prompt + response token rows.

A pair row (dpo, orpo) holds the chosen response as `input_ids`/`labels` (so the finetune loop's
length grouping and token counts apply unchanged) and the rejected one as `rejected_input_ids`/
`rejected_labels`. A kto row holds its one response and `desirable` (bool).

With a `chat` input feature the prompt is the row's conversation and each response is its final assistant turn,
rendered with the chat template; only that turn carries labels (earlier assistant turns are context, the same in
both responses).
"""

from __future__ import annotations

from typing import List

import numpy as np
import pandas as pd

from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.prompt import cell_text, prompt_texts
from ludwig_llm.data.tokenize import encode_for_training
from ludwig_llm.errors import UserError

PAIR_TRAINERS = ("dpo", "orpo")


def _rows_text(rows: List[int], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def check_preference_table(df: pd.DataFrame, split: str, config) -> None:
    """Refuse what a preference trainer cannot learn from, naming the key, column and rows (counting from 0)."""
    trainer, chosen_column = config.trainer, config.output_feature.column_name()
    where = f"{split} split"
    chosen = [cell_text(v) for v in df[chosen_column].tolist()]
    empty = [i for i, text in enumerate(chosen) if not text.strip()]
    if empty:
        raise UserError(f"{where}: the response in column '{chosen_column}' (the output feature) is empty in row(s) {_rows_text(empty)}.")
    if trainer.type in PAIR_TRAINERS:
        column = trainer.rejected_column
        if column not in df.columns:
            raise UserError(f"{where} has no column '{column}' (trainer.rejected_column, the rejected responses); "
                            f"its columns are: {', '.join(map(str, df.columns))}.")
        rejected = [cell_text(v) for v in df[column].tolist()]
        empty = [i for i, text in enumerate(rejected) if not text.strip()]
        if empty:
            raise UserError(f"{where}: the rejected response in column '{column}' (trainer.rejected_column) is empty in row(s) {_rows_text(empty)}.")
        same = [i for i, (c, r) in enumerate(zip(chosen, rejected)) if c.strip() == r.strip()]
        if same:
            raise UserError(f"{where}: the chosen ('{chosen_column}') and rejected ('{column}') responses are identical in "
                            f"row(s) {_rows_text(same)}; a pair must differ to teach a preference.")
    else:
        column = trainer.label_column
        if column not in df.columns:
            raise UserError(f"{where} has no column '{column}' (trainer.label_column, true for a desirable response); "
                            f"its columns are: {', '.join(map(str, df.columns))}.")
        bad = [i for i, v in enumerate(df[column].tolist()) if _boolean(v) is None]
        if bad:
            value = df[column].iloc[bad[0]]
            raise UserError(f"{where}: column '{column}' (trainer.label_column) must be boolean (true or false), got {value!r} "
                            f"in row(s) {_rows_text(bad)}.")


def encode_preference_rows(df: pd.DataFrame, split: str, tokenizer, config, retriever=None) -> List[dict]:
    """Check the table, then encode every row; a response truncated to nothing is refused, naming the row."""
    if df is None or len(df) == 0:
        return []
    check_preference_table(df, split, config)
    trainer, response_column = config.trainer, config.output_feature.column_name()
    conversation = structured_format(config, tokenizer)
    if conversation is not None:  # the response is the conversation's final assistant turn
        conversation.last_turn_only = True

        def encode(column: str):
            return conversation.encode_for_training(df.assign(**{response_column: df[column]}), split=split)
    else:
        prompts = prompt_texts(df, tokenizer, config, retriever)

        def encode(column: str):
            return encode_for_training(prompts, [cell_text(v) for v in df[column]], tokenizer, config)
    chosen = encode(response_column)
    _refuse_dropped(chosen.row_numbers, len(df), split, "chosen")
    if trainer.type in PAIR_TRAINERS:
        rejected = encode(trainer.rejected_column)
        _refuse_dropped(rejected.row_numbers, len(df), split, "rejected")
        return [{"input_ids": c["input_ids"], "labels": c["labels"],
                 "rejected_input_ids": r["input_ids"], "rejected_labels": r["labels"]}
                for c, r in zip(chosen.examples, rejected.examples)]
    labels = [_boolean(v) for v in df[trainer.label_column]]
    return [{"input_ids": c["input_ids"], "labels": c["labels"], "desirable": label} for c, label in zip(chosen.examples, labels)]


def _boolean(value):
    """True or False for a boolean cell (text files give `true`/`false` in any case), else None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _refuse_dropped(kept: List[int], total: int, split: str, which: str) -> None:
    dropped = sorted(set(range(total)) - set(kept))
    if dropped:
        raise UserError(f"{split} split: the {which} response has no token left after truncation in row(s) {_rows_text(dropped)}; "
                        "raise the sequence length limits (preprocessing.global_max_sequence_length).")
