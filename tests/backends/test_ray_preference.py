"""DPO on 2 Ray DDP workers follows the local run's loss curve: each worker's per-pair losses are divided by
the pairs of the whole step, so the averaged gradient is the local one's (as the finetune loop's token loss).
SGD, as in test_ray_token_loss.py. With LoRA, DPO also runs sharded (FSDP2, DeepSpeed ZeRO-2 and ZeRO-3) and
follows the local run: the reference is the sharded policy with its adapter off, and every worker runs the same
forward passes (they are collective). KTO under FSDP follows KTO under DDP; ORPO (no reference model) fine-tunes
every weight under ZeRO-3, and DPO every weight under FSDP (its frozen reference copy sharded too), as locally. About a minute per run on 2 CPU cores, most of it starting the Ray workers."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

from safetensors.torch import load_file  # noqa: E402

from ludwig_llm import results  # noqa: E402
from ludwig_llm.api import LudwigLLM  # noqa: E402
from tests.backends.ray_runs import (  # noqa: E402
    LOSS_TOLERANCE,
    compare_losses,
    losses,
    relative_weight_difference,
    train_in_one_thread,
)
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



SHARDED = {"fsdp": {"type": "fsdp"}, "zero3": {"type": "deepspeed", "zero_stage": 3},
           "zero2": {"type": "deepspeed", "zero_stage": 2}}


def sharded_config(make_config, trainer_type: str, strategy=None, **sections) -> dict:
    """Four AdamW steps (DeepSpeed takes AdamW); on 2 Ray workers with `strategy` when given."""
    if strategy and SHARDED.get(strategy, {}).get("type") == "deepspeed":
        pytest.importorskip("deepspeed")
    trainer = {"_replace": True, "type": trainer_type, "max_steps": 4, "batch_size": 4, "gradient_accumulation_steps": 2,
               "learning_rate": 0.01, "checkpoint_steps": 4, "logging_steps": 1}
    config = make_config(trainer=trainer, **sections)
    if strategy:
        config["backend"] = {"type": "ray", "trainer": {"num_workers": 2, "strategy": SHARDED.get(strategy, {"type": strategy})}}
    return config


def assert_follows(reference, run, label: str, decreases: bool = True) -> None:
    assert run.training_statistics["distributed"]["workers"] == 2
    curve = losses(run.training_statistics)
    assert compare_losses(losses(reference.training_statistics), curve, label) <= LOSS_TOLERANCE
    if decreases:
        assert curve[4] < curve[1], "the loss did not decrease"
    margins = [s["reward_margin"] for s in reference.training_statistics["steps"]]
    assert [s["reward_margin"] for s in run.training_statistics["steps"]] == pytest.approx(margins, abs=LOSS_TOLERANCE)


@pytest.fixture(scope="module")
def local_dpo(make_config, tmp_path_factory):
    """The local LoRA DPO run that the sharded runs are compared with."""
    return train_in_one_thread(sharded_config(make_config, "dpo"), preference_table(), tmp_path_factory.mktemp("local_dpo"))


@pytest.mark.parametrize("strategy", ["fsdp", "zero3", "zero2"])
def test_sharded_lora_dpo_follows_the_local_run(strategy, ray_cluster, make_config, local_dpo, tmp_path):
    # The reference is the sharded policy with its adapter off: the same collective forward passes on every worker.
    config = sharded_config(make_config, "dpo", strategy)
    assert_follows(local_dpo, LudwigLLM(config).train(preference_table(), output_directory=str(tmp_path / strategy)), strategy)


def test_sharded_lora_kto_follows_the_ddp_run(ray_cluster, make_config, tmp_path):
    # KTO's reference point is estimated per worker's micro-batch, so the run to match is DDP's on the same split.
    # Its mismatched sequences take a second policy forward pass without gradient, which FSDP must take too.
    ddp, fsdp = (LudwigLLM(sharded_config(make_config, "kto", strategy)).train(preference_table(),
                                                                             output_directory=str(tmp_path / strategy))
                 for strategy in ("ddp", "fsdp"))
    assert_follows(ddp, fsdp, "kto fsdp")


def test_full_fine_tuning_orpo_under_zero3_follows_the_local_run(ray_cluster, make_config, tmp_path):
    # ORPO has no reference model, so it needs no adapter to be sharded: every weight is partitioned and trained.
    local = train_in_one_thread(sharded_config(make_config, "orpo", adapter=None), preference_table(), tmp_path / "local")
    zero3 = LudwigLLM(sharded_config(make_config, "orpo", "zero3", adapter=None)).train(preference_table(),
                                                                                      output_directory=str(tmp_path / "zero3"))
    # Four steps over different rows of a random model need not lower the loss: the weights show the training.
    assert_follows(local, zero3, "orpo zero3", decreases=False)
    trained, reference = (load_file(os.path.join(run.run_directory, results.MODEL_DIR, "model.safetensors")) for run in (zero3, local))
    base = load_file(os.path.join(make_config()["base_model"], "model.safetensors"))
    assert trained.keys() == reference.keys()
    for part in ("embed_tokens", "self_attn", "mlp"):
        assert relative_weight_difference(trained, reference, part) < 0.01, part
    assert relative_weight_difference(trained, base, "self_attn") > 0.001, "full fine-tuning moved no weight"


def test_full_fine_tuning_dpo_under_fsdp_follows_the_local_run(ray_cluster, make_config, tmp_path):
    # Without an adapter the reference is a frozen copy of the base model, which FSDP shards like the policy.
    local = train_in_one_thread(sharded_config(make_config, "dpo", adapter=None), preference_table(), tmp_path / "local")
    fsdp = LudwigLLM(sharded_config(make_config, "dpo", "fsdp", adapter=None)).train(preference_table(),
                                                                                    output_directory=str(tmp_path / "fsdp"))
    assert_follows(local, fsdp, "full dpo fsdp")
