"""The preference recipe on the finetune loop's machinery, on synthetic token rows: exact resume from a
checkpoint, gradient accumulation giving the step of one whole batch, and early stopping on reward accuracy."""

from __future__ import annotations

import os

import pytest
import torch

from ludwig_llm.results import CHECKPOINTS_DIR, latest_checkpoint_in
from ludwig_llm.schema import load_config
from ludwig_llm.trainers.preference import run_preference
from ludwig_llm.trainers.session import LocalSession
from tests.conftest import tiny_config
from tests.trainers.test_trainer_loop import (
    Interrupted,
    assert_same_weights,
    checkpoint_weights,
    interrupt_after_checkpoint,
    job_for,
)


def pair_rows(count: int, seed: int = 0, prompt: int = 5):
    """Pairs sharing a prompt; chosen and rejected responses of different lengths."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(count):
        head = torch.randint(10, 300, (prompt,), generator=generator).tolist()
        chosen = torch.randint(10, 300, (4 + i % 3,), generator=generator).tolist()
        rejected = torch.randint(10, 300, (6 - i % 3,), generator=generator).tolist()
        rows.append({"input_ids": head + chosen, "labels": [-100] * prompt + chosen,
                     "rejected_input_ids": head + rejected, "rejected_labels": [-100] * prompt + rejected})
    return rows


def dpo_config(model_dir: str, **trainer) -> dict:
    return tiny_config(model_dir, adapter={"dropout": 0.1},
                       trainer={"_replace": True, "type": "dpo", "learning_rate": 0.005, "logging_steps": 1, **trainer})


def run(config, base, run_dir, rows, validation=(), resume_from=None):
    os.makedirs(run_dir, exist_ok=True)
    session = LocalSession(str(run_dir), load_config(config).trainer.checkpoints_to_keep, resume_from)
    return run_preference(job_for(config, base, rows, validation), session)


def test_dpo_resumes_exactly_where_it_stopped(tiny_model_dir, tmp_path, monkeypatch):
    config = dpo_config(tiny_model_dir, max_steps=5, batch_size=4, checkpoint_steps=2, eval_steps=2, checkpoints_to_keep=5)
    rows, validation = pair_rows(16), pair_rows(4, seed=1)
    straight = run(config, tiny_model_dir, tmp_path / "straight", rows, validation)
    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, 2)
        with pytest.raises(Interrupted):
            run(config, tiny_model_dir, tmp_path / "resumed", rows, validation)
    resumed = run(config, tiny_model_dir, tmp_path / "resumed", rows, validation,
                  resume_from=latest_checkpoint_in(str(tmp_path / "resumed")))
    assert resumed["steps"] == straight["steps"] and resumed["evaluations"] == straight["evaluations"]
    assert_same_weights(checkpoint_weights(tmp_path / "straight", 5), checkpoint_weights(tmp_path / "resumed", 5))
    assert os.path.isdir(tmp_path / "resumed" / CHECKPOINTS_DIR)


def test_accumulated_micro_batches_make_the_step_of_one_batch(tiny_model_dir, tmp_path):
    """8 pairs in one pass, or in 4 micro-batches of 2: the same mean per-pair loss, so the same update."""
    rows = pair_rows(8)
    common = {"max_steps": 2, "group_by_length": False, "checkpoint_steps": 1}
    whole_config, split_config = (dpo_config(tiny_model_dir, **common, **sizes)
                                  for sizes in ({"batch_size": 8}, {"batch_size": 2, "gradient_accumulation_steps": 4}))
    whole_config["adapter"]["dropout"] = split_config["adapter"]["dropout"] = 0.0
    whole = run(whole_config, tiny_model_dir, tmp_path / "whole", rows)
    split = run(split_config, tiny_model_dir, tmp_path / "split", rows)
    assert [s["loss"] for s in whole["steps"]] == pytest.approx([s["loss"] for s in split["steps"]], rel=1e-4)
    assert whole["steps"][1]["reward_margin"] == pytest.approx(split["steps"][1]["reward_margin"], abs=1e-4)
    assert_same_weights(checkpoint_weights(tmp_path / "whole", 2), checkpoint_weights(tmp_path / "split", 2), atol=1e-5)


def test_early_stopping_follows_validation_reward_accuracy(tiny_model_dir, tmp_path, monkeypatch):
    from ludwig_llm.trainers import preference

    accuracies = iter([0.5, 0.75, 0.5, 0.5, 1.0])
    monkeypatch.setattr(preference.PreferenceRecipe, "_validation_metrics",
                        lambda self: {"loss": 0.7, "reward_accuracy": next(accuracies), "reward_margin": 0.0})
    config = dpo_config(tiny_model_dir, max_steps=10, batch_size=4, eval_steps=1, early_stop=2, validation_metric="reward_accuracy")
    statistics = run(config, tiny_model_dir, tmp_path / "run", pair_rows(8), pair_rows(2, seed=1))
    assert statistics["total_steps"] == 4
    assert statistics["best"] == {"step": 2, "reward_accuracy": 0.75, "metric": "reward_accuracy"}
