"""The `grpo` trainer's driver side: check the rewards' columns, encode the prompts, run the recipe on the workers."""

from __future__ import annotations

import pandas as pd

from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.prompt import prompt_texts
from ludwig_llm.data.tokenize import IGNORE_INDEX, encode_prompts
from ludwig_llm.errors import UserError
from ludwig_llm.trainers.finetune_launch import launch
from ludwig_llm.trainers.grpo import GRPOJob, run_grpo
from ludwig_llm.trainers.rewards import build_rewards, check_reward_columns
from ludwig_llm.trainers.run import TrainingRun


def prompt_rows(df: pd.DataFrame, split: str, tokenizer, config, retriever=None) -> list:
    """Each row's prompt token ids (`input_ids`, with `labels` all ignored for the loop's bookkeeping) and the row's
    cells (`row`), which the rewards read. With a `chat` input feature the prompt is the conversation, rendered with
    the chat template up to the next assistant turn."""
    if df is None or len(df) == 0:
        return []
    check_reward_columns(df, split, config)
    conversation = structured_format(config, tokenizer)
    if conversation is not None:
        ids = conversation.encode_prompts(df)
    else:
        ids = encode_prompts(prompt_texts(df, tokenizer, config, retriever), tokenizer, config)
    return [{"input_ids": prompt, "labels": [IGNORE_INDEX] * len(prompt), "row": row}
            for prompt, row in zip(ids, df.to_dict("records"))]


def train(run: TrainingRun) -> dict:
    data, config = run.data, run.config
    build_rewards(config, run.reward_functions)  # refuses a run without rewards before any model is loaded
    if data.splits.train is None or len(data.splits.train) == 0:
        raise UserError("the training split is empty: give more rows, or change preprocessing.split.")
    train_rows = prompt_rows(data.splits.train, "training", run.tokenizer, config, data.retriever)
    validation_rows = prompt_rows(data.splits.validation, "validation", run.tokenizer, config, data.retriever)
    return launch(run, run_grpo, train_rows, validation_rows,
                  job_class=GRPOJob, reward_functions=list(run.reward_functions))
