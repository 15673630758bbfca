"""Backend section: where training and batch prediction run (this process, or a Ray cluster)."""

from __future__ import annotations

from typing import Dict, Optional

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, nested, option
from ludwig_llm.schema.registry import backend_registry


class BaseBackendConfig(BaseConfig):
    """Common to every backend type."""


@backend_registry.register("local")
@config_class
class LocalBackendConfig(BaseBackendConfig):
    """Runs everything in this process, on its GPU if it has one."""

    title = "Local"
    type: str = option("local", "Backend type.", choices=["local"], impact=Impact.HIGH)


@config_class
class RayTrainerOptions(BaseConfig):
    """How Ray Train runs the fine-tuning workers."""

    title = "Ray training workers"

    num_workers: int = option(1, "Training workers (processes); each holds a model replica or shard.", min=1, impact=Impact.HIGH)
    use_gpu: bool = option(False, "Give each worker a GPU.", impact=Impact.HIGH)
    resources_per_worker: Optional[Dict[str, float]] = option(
        None, "Ray resources per worker, e.g. `{CPU: 4, GPU: 1}`; null uses Ray Train's default (1 CPU, plus 1 GPU with `use_gpu`).",
        impact=Impact.MEDIUM,
    )
    strategy: str = option(
        "ddp", "Distribution strategy: `ddp` (a model replica per worker, gradients averaged). `fsdp` (sharded parameters) and "
        "`deepspeed` (ZeRO) are reserved names: the training loop does not shard models yet, so a run asking for them is refused at start.",
        choices=["ddp", "fsdp", "deepspeed"], impact=Impact.MEDIUM,
    )
    max_failures: int = option(
        0, "Times a failed worker group is restarted from the last checkpoint before the run fails; -1 retries forever.",
        min=-1, impact=Impact.MEDIUM,
    )


@config_class
class RayProcessorOptions(BaseConfig):
    """How Ray Data runs batch prediction."""

    title = "Ray prediction actors"

    num_actors: int = option(1, "Model replicas (actors) predicting in parallel.", min=1, impact=Impact.HIGH)
    num_gpus_per_actor: float = option(0.0, "GPUs given to each prediction actor.", min=0.0, impact=Impact.MEDIUM)
    num_cpus_per_actor: float = option(1.0, "CPUs given to each prediction actor.", min=0.0, min_inclusive=False, impact=Impact.LOW)
    batch_size: int = option(16, "Rows per batch sent to an actor.", min=1, impact=Impact.LOW)


@backend_registry.register("ray")
@config_class
class RayBackendConfig(BaseBackendConfig):
    """Runs fine-tuning with Ray Train and batch prediction with Ray Data, locally or on a cluster."""

    title = "Ray"
    type: str = option("ray", "Backend type.", choices=["ray"], impact=Impact.HIGH)
    address: Optional[str] = option(
        None, "Ray cluster to connect to (e.g. `ray://head:10001`); null uses `RAY_ADDRESS`, else starts Ray locally.", impact=Impact.MEDIUM
    )
    trainer: RayTrainerOptions = nested(RayTrainerOptions, "How many Ray Train workers fine-tune the model, with which resources and distribution strategy.", impact=Impact.HIGH)
    processor: RayProcessorOptions = nested(RayProcessorOptions, "How many Ray Data actors hold a model replica for batch prediction, and their resources.")
