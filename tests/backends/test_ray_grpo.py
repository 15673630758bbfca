"""grpo on 2 Ray DDP workers: each samples completions of its share of the prompts, an API reward function travels to
the workers, and the statistics cover every worker's completions. Sampling differs from a local run's (each worker
draws its own), so the curves are not compared; the loss and its normalisation are the DDP path dpo shares
(tests/backends/test_ray_preference.py)."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

import pandas as pd  # noqa: E402

from ludwig_llm.api import LudwigLLM  # noqa: E402
from tests.conftest import record_rows  # noqa: E402


def test_grpo_on_two_workers_samples_on_each_and_reports_all_completions(ray_cluster, make_config, tmp_path):
    trainer = {"_replace": True, "type": "grpo", "max_steps": 3, "batch_size": 4, "learning_rate": 0.005, "logging_steps": 1,
               "grpo_num_generations": 4, "rollout": {"max_new_tokens": 4}, "eval_steps": 3,
               "rewards": [{"type": "regex", "pattern": "[a-z]", "full_match": False}]}
    config = {**make_config(trainer=trainer), "backend": {"type": "ray", "trainer": {"num_workers": 2}}}
    result = LudwigLLM(config).train(pd.DataFrame(record_rows(24)), output_directory=str(tmp_path / "ray"),
                                     rewards=[lambda completions, rows: [len(c) / 10 for c in completions]])
    statistics = result.training_statistics
    assert statistics["distributed"]["workers"] == 2 and statistics["total_steps"] == 3
    steps = statistics["steps"]
    assert all({"reward", "reward_regex", "reward_function_0", "kl"} <= set(step) for step in steps)
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6) and steps[-1]["kl"] > 0
    for step in steps:
        assert step["reward"] == pytest.approx(step["reward_regex"] + step["reward_function_0"], abs=1e-5)
        assert 0 < step["completion_length"] <= 4
    assert "reward" in statistics["evaluations"][-1]["validation"]
