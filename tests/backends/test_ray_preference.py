"""DPO on 2 Ray DDP workers follows the local run's loss curve: each worker's per-pair losses are divided by
the pairs of the whole step, so the averaged gradient is the local one's (as the finetune loop's token loss).
SGD, as in test_ray_token_loss.py. About a minute on 2 CPU cores, most of it starting the Ray workers."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

from ludwig_llm.api import LudwigLLM  # noqa: E402
from tests.backends.ray_runs import compare_losses, losses, train_in_one_thread  # noqa: E402
from tests.trainers.test_preference_trainers import preference_table  # noqa: E402

TOLERANCE = 1e-5  # as the finetune loop's token loss over workers (tests/backends/test_ray_token_loss.py)


def test_dpo_on_two_workers_follows_the_local_loss_curve(ray_cluster, make_config, tmp_path):
    trainer = {"_replace": True, "type": "dpo", "max_steps": 4, "batch_size": 4, "gradient_accumulation_steps": 2,
               "learning_rate": 0.5, "optimizer": {"type": "sgd"}, "checkpoint_steps": 4, "logging_steps": 1}
    config = make_config(trainer=trainer)
    dataset = preference_table()
    local = train_in_one_thread(config, dataset, tmp_path / "local")
    distributed = LudwigLLM({**config, "backend": {"type": "ray", "trainer": {"num_workers": 2}}}).train(
        dataset, output_directory=str(tmp_path / "ray"))
    assert distributed.training_statistics["distributed"]["workers"] == 2
    local_steps, ray_steps = local.training_statistics["steps"], distributed.training_statistics["steps"]
    assert compare_losses(losses(local.training_statistics), losses(distributed.training_statistics), "2 workers") <= TOLERANCE
    assert [s["reward_accuracy"] for s in ray_steps] == [s["reward_accuracy"] for s in local_steps]
    assert [s["reward_margin"] for s in ray_steps] == pytest.approx([s["reward_margin"] for s in local_steps], abs=1e-5)
