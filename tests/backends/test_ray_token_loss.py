"""The loss is normalised by target tokens across workers: 2 Ray DDP workers follow the local loss curve.

Rows of the small dataset differ in length and are grouped by length, so a worker's half of a micro-batch
holds more or fewer target tokens than the other half. Each worker divides its summed token loss by the
target tokens of the whole step (all micro-batches, all workers), so the averaged gradient is the local
one's. SGD, because Adam turns float-rounding differences of near-zero gradients into full-size steps.
About a minute on 2 CPU cores, most of it starting the Ray workers.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

from ludwig_llm.api import LudwigLLM  # noqa: E402
from tests.backends.ray_runs import compare_losses, losses, train_in_one_thread  # noqa: E402

# Only the summation order differs (gloo's all-reduce, per-worker padding): float32 rounding, measured
# at 4e-7. Per-worker mean losses (the loop before token normalisation) were 1.7e-4 off.
TOKEN_LOSS_TOLERANCE = 1e-5


@pytest.mark.parametrize("packing", [False, True])
def test_two_workers_follow_the_local_token_loss_curve(packing, ray_cluster, make_config, small_dataset, tmp_path):
    """With packing, each micro-batch's rows are packed the same on every worker and the packs shared."""
    trainer = {"max_steps": 4, "batch_size": 4, "gradient_accumulation_steps": 2, "learning_rate": 0.5,
               "optimizer": {"type": "sgd"}, "checkpoint_steps": 4, "group_by_length": True, "packing": packing}
    config = make_config(trainer=trainer)
    local = train_in_one_thread(config, small_dataset, tmp_path / "local")
    distributed = LudwigLLM({**config, "backend": {"type": "ray", "trainer": {"num_workers": 2}}}).train(
        small_dataset, output_directory=str(tmp_path / "ray"))
    assert distributed.training_statistics["distributed"]["workers"] == 2
    assert compare_losses(losses(local.training_statistics), losses(distributed.training_statistics), "2 workers") <= TOKEN_LOSS_TOLERANCE
