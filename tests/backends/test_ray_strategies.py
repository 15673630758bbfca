"""Sharded strategies on the Ray backend: FSDP2 and DeepSpeed ZeRO with 2 CPU workers (gloo).

Each strategy fine-tunes the tiny model with LoRA, and FSDP and ZeRO-3 also without an adapter (every
weight sharded and trained). Each run is compared with the local loop: same seed and global batch, so
the loss curves and the saved weights must agree closely. A worker killed mid-run shows that a sharded
run resumes with its optimizer state intact: the losses after the restart equal those of the run that
was never interrupted. A checkpoint written by the local loop resumes under FSDP: one format for all.

Each Ray run takes 20-40 s on 2 CPU cores, most of it starting the worker processes.
"""

from __future__ import annotations

import os

import pytest
import yaml

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

from ludwig_llm import results  # noqa: E402
from ludwig_llm.api import LudwigLLM  # noqa: E402
from ludwig_llm.backends.local import LocalBackend  # noqa: E402
from ludwig_llm.backends.ray_session import FAIL_ONCE_ENV  # noqa: E402
from ludwig_llm.errors import ConfigValidationError  # noqa: E402
from ludwig_llm.schema import load_config  # noqa: E402
from tests.backends.ray_runs import (  # noqa: E402
    LOSS_TOLERANCE,
    STEPS,
    compare_losses,
    losses,
    relative_weight_difference,
    train_config,
    train_in_one_thread,
)

STRATEGIES = {
    "ddp": {"type": "ddp"},
    "fsdp": {"type": "fsdp"},
    "zero3": {"type": "deepspeed", "zero_stage": 3},
    "zero2": {"type": "deepspeed", "zero_stage": 2},
}
# A resumed run repeats the same arithmetic on the same data: only summation order may differ.
RESUME_TOLERANCE = 1e-4


def ray_backend_with(strategy: dict, **trainer) -> dict:
    return {"type": "ray", "trainer": {"num_workers": 2, "strategy": strategy, **trainer}}


def needs(strategy: str) -> None:
    if STRATEGIES[strategy]["type"] == "deepspeed":
        pytest.importorskip("deepspeed")


@pytest.fixture(scope="module")
def sharded_runs(ray_cluster, make_config, small_dataset, tmp_path_factory):
    """One LoRA run per strategy, made when first asked for."""
    made = {}

    def run(strategy: str):
        needs(strategy)
        if strategy not in made:
            config = train_config(make_config, ray_backend_with(STRATEGIES[strategy]))
            made[strategy] = LudwigLLM(config).train(small_dataset, output_directory=str(tmp_path_factory.mktemp(strategy)))
        return made[strategy]

    return run


def saved_weights(run, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(run.run_directory, results.MODEL_DIR, name))


@pytest.mark.parametrize("strategy", ["fsdp", "zero3", "zero2"])
def test_sharded_lora_follows_the_local_run(strategy, sharded_runs, local_run):
    run = sharded_runs(strategy)
    statistics = run.training_statistics
    assert statistics["distributed"]["workers"] == 2 and statistics["total_steps"] == STEPS
    curve = losses(statistics)
    assert compare_losses(losses(local_run.training_statistics), curve, strategy) <= LOSS_TOLERANCE
    assert curve[STEPS] < curve[1], "the loss did not decrease"
    # The same run directory as a local run, with the same checkpoint files ...
    local_checkpoint, checkpoint = results.latest_checkpoint_in(local_run.run_directory), results.latest_checkpoint_in(run.run_directory)
    assert os.path.basename(checkpoint) == f"step-{STEPS:08d}"
    assert sorted(os.listdir(checkpoint)) == sorted(os.listdir(local_checkpoint))
    # ... and whole (gathered) adapter weights that match the local ones.
    trained, reference = saved_weights(run, "adapter_model.safetensors"), saved_weights(local_run, "adapter_model.safetensors")
    assert trained.keys() == reference.keys()
    assert all(trained[name].shape == reference[name].shape for name in reference)
    for part in ("lora_A", "lora_B"):
        assert relative_weight_difference(trained, reference, part) < 0.01, part


@pytest.mark.parametrize("strategy", ["fsdp"])
def test_the_sharded_model_predicts_like_the_local_one(strategy, sharded_runs, local_run, small_dataset):
    rows = small_dataset.iloc[:6].reset_index(drop=True)
    run = sharded_runs(strategy)
    local = LudwigLLM.load(os.path.join(local_run.run_directory, results.MODEL_DIR))
    sharded = LudwigLLM.load(os.path.join(run.run_directory, results.MODEL_DIR))
    in_this_process = LocalBackend(local.config)  # the comparison is of the weights, not of where they run
    expected = in_this_process.predict(local._loaded, rows)
    got = in_this_process.predict(sharded._loaded, rows)
    assert got["record_response"].tolist() == expected["record_response"].tolist()


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_full_fine_tuning_sharded_matches_the_local_run(strategy, ray_cluster, make_config, small_dataset, tmp_path):
    needs(strategy)
    # With activation checkpointing, as a full fine-tuning of a large model would use it.
    no_adapter = dict(adapter=None, trainer={"max_steps": 3, "checkpoint_steps": 3, "learning_rate": 0.001,
                                             "gradient_checkpointing": True})
    local = train_in_one_thread(train_config(make_config, **no_adapter), small_dataset, tmp_path / "local")
    config = train_config(make_config, ray_backend_with(STRATEGIES[strategy]), **no_adapter)
    sharded = LudwigLLM(config).train(small_dataset, output_directory=str(tmp_path / "sharded"))
    assert compare_losses(losses(local.training_statistics), losses(sharded.training_statistics), strategy) <= LOSS_TOLERANCE
    trained, reference = saved_weights(sharded, "model.safetensors"), saved_weights(local, "model.safetensors")
    assert trained.keys() == reference.keys()
    for part in ("embed_tokens", "self_attn", "mlp"):
        assert relative_weight_difference(trained, reference, part) < 0.01, part
    # Full fine-tuning moved every weight: the untrained base is far from both.
    from safetensors.torch import load_file

    base = load_file(os.path.join(make_config()["base_model"], "model.safetensors"))
    assert relative_weight_difference(trained, base, "self_attn") > 0.01


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero3"])
def test_a_killed_run_resumes_with_its_optimizer_state(strategy, sharded_runs, make_config, small_dataset,
                                                               tmp_path, monkeypatch):
    uninterrupted = losses(sharded_runs(strategy).training_statistics)
    marker = tmp_path / "worker-killed"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:4:{marker}")
    config = train_config(make_config, ray_backend_with(STRATEGIES[strategy], max_failures=1))
    resumed = LudwigLLM(config).train(small_dataset, output_directory=str(tmp_path / "out"))
    assert marker.read_text().startswith("rank 1 exited at step 4"), "the worker was not killed"
    statistics = resumed.training_statistics
    assert statistics["distributed"]["restored_from"] == {"source": "ray_train", "checkpoint": "step-00000002", "step": 2}
    # Steps 4-6 follow Adam updates made after the restart: they match only if its moments and step count
    # came back as they were (a fresh optimizer's first update alone moves the loss by more than 1e-3).
    curve = losses(statistics)
    assert compare_losses(uninterrupted, curve, f"{strategy} resumed") <= RESUME_TOLERANCE


def test_a_local_checkpoint_resumes_under_fsdp(ray_cluster, make_config, small_dataset, local_run, tmp_path):
    import shutil

    # The local run's step-4 checkpoint, as if that run had stopped there.
    run_directory = tmp_path / "run"
    shutil.copytree(local_run.run_directory, run_directory)
    shutil.rmtree(os.path.join(run_directory, results.CHECKPOINTS_DIR, f"step-{STEPS:08d}"))
    shutil.rmtree(os.path.join(run_directory, results.MODEL_DIR))
    # --resume takes the run's saved config: the user moves the run to two FSDP workers there.
    config = load_config(train_config(make_config, ray_backend_with(STRATEGIES["fsdp"])))
    with open(run_directory / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    resumed = LudwigLLM(config).train(small_dataset, resume=str(run_directory))
    statistics = resumed.training_statistics
    assert statistics["distributed"]["restored_from"]["step"] == 4
    local = losses(local_run.training_statistics)
    curve = losses(statistics)
    assert compare_losses({step: local[step] for step in curve}, curve, "fsdp from local") <= LOSS_TOLERANCE


# ---------------------------------------------------------------------------------------------
# Configs that cannot work are refused before anything starts


@pytest.mark.parametrize("sections,path", [
    (dict(quantization={"bits": 4}), "backend.trainer.strategy.type"),
    (dict(adapter={"type": "adalora", "_replace": True}), "backend.trainer.strategy.type"),
    (dict(trainer={"optimizer": {"type": "adamw_8bit"}}), "trainer.optimizer.type"),
])
def test_what_sharding_cannot_take_is_refused(make_config, sections, path):
    config = train_config(make_config, ray_backend_with("fsdp"), **sections)
    with pytest.raises(ConfigValidationError) as error:
        load_config(config)
    assert path in str(error.value)


def test_offloading_needs_gpu_workers_and_zero_3(make_config):
    with pytest.raises(ConfigValidationError, match=r"backend.trainer.strategy.cpu_offload: offloading to CPU memory is for GPU workers"):
        load_config(train_config(make_config, ray_backend_with({"type": "fsdp", "cpu_offload": True})))
    with pytest.raises(ConfigValidationError, match=r"offload_parameters: only ZeRO stage 3 shards parameters"):
        load_config(train_config(make_config, ray_backend_with({"type": "deepspeed", "zero_stage": 2, "offload_parameters": True},
                                                               use_gpu=True)))
    config = load_config(train_config(make_config, ray_backend_with({"type": "deepspeed", "offload_optimizer": True}, use_gpu=True)))
    assert config.backend.trainer.strategy.offload_optimizer


def test_deepspeed_config_follows_the_trainer_section(make_config):
    from ludwig_llm.trainers.strategies import DeepSpeedStrategy

    config = load_config(train_config(make_config, ray_backend_with({"type": "deepspeed", "zero_stage": 3, "offload_optimizer": True},
                                                                     use_gpu=True),
                                      trainer={"batch_size": 8, "gradient_accumulation_steps": 4, "max_grad_norm": 0.5}))

    class Session:
        world_size, rank = 2, 0

    import torch

    strategy = DeepSpeedStrategy(config.backend.trainer.strategy, Session(), torch.device("cpu"), config.trainer)
    deepspeed_config = strategy._deepspeed_config()
    assert deepspeed_config["train_micro_batch_size_per_gpu"] == 4 and deepspeed_config["gradient_accumulation_steps"] == 4
    assert deepspeed_config["train_batch_size"] == 32 and deepspeed_config["gradient_clipping"] == 0.5
    assert deepspeed_config["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True}}
    assert "bf16" not in deepspeed_config and "fp16" not in deepspeed_config  # the CPU trains in fp32
