"""Backend section: where training and batch prediction run (this process, or a Ray cluster)."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Optional

import marshmallow

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, nested, option, typed_union
from ludwig_llm.schema.registry import backend_registry, strategy_registry


class BaseBackendConfig(BaseConfig):
    """Common to every backend type."""

    implementation: ClassVar[str]  # the backend class, "module:Class"; imported only when this type is chosen


def _cache_dir():
    return option(
        None, "Ludwig's directory for preprocessed datasets. Accepted and ignored: ludwig_llm caches tokenized datasets "
        "under `$LUDWIG_LLM_CACHE/datasets` (default `~/.cache/ludwig_llm/datasets`); set that variable to move the cache.",
        impact=Impact.LOW,
    )


@backend_registry.register("local")
@config_class
class LocalBackendConfig(BaseBackendConfig):
    """Runs everything in this process, on its GPU if it has one."""

    title = "Local"
    implementation = "ludwig_llm.backends.local:LocalBackend"
    type: str = option("local", "Backend type.", choices=["local"], impact=Impact.HIGH)
    cache_dir: Optional[str] = _cache_dir()


class BaseStrategyConfig(BaseConfig):
    """Common to every distribution strategy."""

    implementation: ClassVar[str]  # the strategy class, "module:Class"
    needs_package: ClassVar[Optional[str]] = None  # what every worker must have installed; checked before training starts


@strategy_registry.register("ddp")
@config_class
class DDPStrategyConfig(BaseStrategyConfig):
    """Distributed data parallel: every worker holds the whole model and the gradients are averaged at each
    optimizer step. The fastest choice when the model, its gradients and optimizer state fit on one worker;
    with an adapter only the adapter's gradients travel."""

    title = "DDP"
    implementation = "ludwig_llm.trainers.strategies:Strategy"
    type: str = option("ddp", "Strategy type.", choices=["ddp"], impact=Impact.HIGH)


@strategy_registry.register("fsdp")
@config_class
class FSDPStrategyConfig(BaseStrategyConfig):
    """Fully sharded data parallel (PyTorch FSDP2): parameters, gradients and optimizer state are split over
    the workers, and each decoder layer's parameters are gathered only while that layer runs. For models
    whose full fine-tuning does not fit on one worker."""

    title = "FSDP"
    implementation = "ludwig_llm.trainers.strategies:FSDPStrategy"
    type: str = option("fsdp", "Strategy type.", choices=["fsdp"], impact=Impact.HIGH)
    reshard_after_forward: bool = option(
        True, "Free each layer's gathered parameters after its forward pass and gather them again for the backward "
        "pass (least memory, like ZeRO-3). `false` keeps them until the backward pass: one gather less per layer "
        "and step, more memory (like ZeRO-2).", impact=Impact.MEDIUM,
    )
    cpu_offload: bool = option(
        False, "Keep the sharded parameters, gradients and optimizer state in CPU memory and compute the optimizer "
        "step there; fits larger models on small GPUs, trains more slowly. Needs `use_gpu`.", impact=Impact.MEDIUM,
    )


@strategy_registry.register("deepspeed")
@config_class
class DeepSpeedStrategyConfig(BaseStrategyConfig):
    """DeepSpeed ZeRO: optimizer state (stage 1), gradients (stage 2) and parameters (stage 3) are split over
    the workers. Needs the `deepspeed` package on every worker."""

    title = "DeepSpeed"
    implementation = "ludwig_llm.trainers.strategies:DeepSpeedStrategy"
    needs_package = "deepspeed"
    type: str = option("deepspeed", "Strategy type.", choices=["deepspeed"], impact=Impact.HIGH)
    zero_stage: int = option(
        3, "What ZeRO shards: 1 the optimizer state, 2 also the gradients, 3 also the parameters (least memory "
        "per worker, most communication).", choices=[1, 2, 3], impact=Impact.HIGH,
    )
    offload_optimizer: bool = option(
        False, "Keep the optimizer state in CPU memory and run the optimizer step there (ZeRO-Offload). Needs `use_gpu`.",
        impact=Impact.MEDIUM,
    )
    offload_parameters: bool = option(
        False, "Keep the sharded parameters in CPU memory between uses (ZeRO-Infinity). Needs `use_gpu` and `zero_stage: 3`.",
        impact=Impact.LOW,
    )

    @marshmallow.pre_load
    def _ludwig_zero_optimization(self, data, **kwargs):
        """DeepSpeed's own `zero_optimization` block (as Ludwig passes it through) mapped onto our three keys."""
        if not isinstance(data, dict) or "zero_optimization" not in data:
            return data
        data = dict(data)
        block = data.pop("zero_optimization")
        problems = {}
        mapped = {"stage": "zero_stage", "offload_optimizer": "offload_optimizer", "offload_param": "offload_parameters"}
        if not isinstance(block, dict):
            raise marshmallow.ValidationError({"zero_optimization": ["expected a mapping (DeepSpeed's ZeRO settings)."]})
        for key, value in block.items():
            ours = mapped.get(key)
            if ours is None:
                problems[key] = [f"not mapped: ludwig_llm builds the rest of the DeepSpeed config itself; it reads only "
                                 f"{', '.join(mapped)} from this block (as {', '.join(mapped.values())})."]
            elif ours in data:
                problems[key] = [f"given twice: here and as '{ours}'; keep one."]
            elif key == "stage":
                data[ours] = value
            elif isinstance(value, dict) and value.get("device", "none") in ("cpu", "none"):
                data[ours] = value.get("device", "none") == "cpu"  # pin_memory and buffer sizes are DeepSpeed's defaults here
            else:
                problems[key] = ["only `device: cpu` or `device: none` is supported (NVMe offload is not)."]
        if problems:
            raise marshmallow.ValidationError({"zero_optimization": problems})
        return data


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
    strategy: Any = typed_union(
        strategy_registry, DDPStrategyConfig,
        "How the model is spread over the workers: `ddp` (a full replica each), `fsdp` or `deepspeed` (sharded). "
        "A bare name (`strategy: fsdp`) takes that strategy's defaults.", impact=Impact.MEDIUM,
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
    parallelism: Optional[int] = option(
        None, "Ludwig's number of Dask partitions for preprocessing. Accepted and ignored: ludwig_llm tokenizes in the "
        "driver and sends prediction rows in blocks of `batch_size`; the parallel work is set by `num_actors`.",
        min=1, impact=Impact.LOW,
    )


@backend_registry.register("ray")
@config_class
class RayBackendConfig(BaseBackendConfig):
    """Runs fine-tuning with Ray Train and batch prediction with Ray Data, locally or on a cluster."""

    title = "Ray"
    implementation = "ludwig_llm.backends.ray:RayBackend"
    type: str = option("ray", "Backend type.", choices=["ray"], impact=Impact.HIGH)
    address: Optional[str] = option(
        None, "Ray cluster to connect to (e.g. `ray://head:10001`); null uses `RAY_ADDRESS`, else starts Ray locally.", impact=Impact.MEDIUM
    )
    trainer: RayTrainerOptions = nested(RayTrainerOptions, "How many Ray Train workers fine-tune the model, with which resources and distribution strategy.", impact=Impact.HIGH)
    cache_dir: Optional[str] = _cache_dir()
    processor: RayProcessorOptions = nested(RayProcessorOptions, "How many Ray Data actors hold a model replica for batch prediction, and their resources.")
