"""SmolLM2 learns, from multi-turn chat data, to answer with facts the user gave turns earlier (the
settings of examples/chat on freshly drawn conversations, with fewer held-out rows)."""

from __future__ import annotations

import importlib.util
import json
import os
import random

import pandas as pd
import pytest

from ludwig_llm.api import LudwigLLM
from ludwig_llm.results import MODEL_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def example_conversations(count: int, seed: int):
    spec = importlib.util.spec_from_file_location("chat_make_data", os.path.join(REPO, "examples", "chat", "make_data.py"))
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    rng = random.Random(seed)
    return [make_data.conversation(rng) for _ in range(count)]


def config(trainer: dict) -> dict:
    section = {
        "base_model": "smollm2-135m-instruct",
        "input_features": [{"name": "messages", "type": "chat"}],
        "output_features": [{"name": "reply", "type": "text"}],
        "trainer": trainer,
        "generation": {"max_new_tokens": 16},
    }
    if trainer["type"] == "finetune":
        section["adapter"] = "lora"  # default LoRA settings
    return section


@pytest.mark.slow
def test_smollm2_learns_to_recall_facts_from_earlier_turns(tmp_path):
    train = pd.DataFrame({"messages": example_conversations(120, seed=1)})  # 30 steps an epoch
    # held out in the ShareGPT form: the same loader recognises it
    held_out = pd.DataFrame({"messages": [[{"from": {"user": "human", "assistant": "gpt"}[t["role"]], "value": t["content"]} for t in turns]
                                          for turns in example_conversations(10, seed=2)]})
    zero_shot = LudwigLLM(config({"type": "none"})).train(training_set=train, output_directory=str(tmp_path / "zero"))
    before = LudwigLLM.load(os.path.join(zero_shot.run_directory, MODEL_DIR)).evaluate(held_out, output_directory=None)
    trained = LudwigLLM(config({"type": "finetune", "epochs": 2, "batch_size": 4, "learning_rate": 0.002})).train(
        training_set=train, output_directory=str(tmp_path / "trained"))
    after = LudwigLLM.load(os.path.join(trained.run_directory, MODEL_DIR)).evaluate(held_out, output_directory=None)
    print(json.dumps({"zero_shot": before.statistics["reply"]["exact_match"], "trained": after.statistics["reply"]["exact_match"]}))
    assert before.statistics["reply"]["exact_match"] <= 0.2
    assert after.statistics["reply"]["exact_match"] >= 0.8
