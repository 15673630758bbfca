"""How a training worker's model is spread over the workers: one class per distribution strategy.

The fine-tuning loop calls the same few methods whatever the strategy: `prepare` (place and wrap the
model, build the optimizer), `micro_batch` (gradient sync on or off), `backward`, `optimizer_step`,
and the collective state calls that checkpoints use. State leaves and enters in one format for every
strategy: full (unsharded) trainable weights and an optimizer state keyed by parameter name (the
"full state dict" of torch.distributed.checkpoint). A checkpoint written by one strategy and number
of workers therefore resumes under any other, and it stays safetensors plus weights-only tensors.

The wrappers are the documented calls of PyTorch (DDP, FSDP2's `fully_shard`) and DeepSpeed
(`deepspeed.initialize`), not accelerate: the loop is ours already, and DeepSpeed's own checkpoints
(which accelerate would write) are unpickled on load, which we refuse.

Every method marked *collective* must be called by every worker at the same point of the loop.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Dict, List

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from ludwig_llm.models.precision import Precision, resolve_precision
from ludwig_llm.schema.registry import load_implementation


class Strategy:
    """One worker, or DDP over several: each worker holds the whole model."""

    sharded = False  # True when no worker holds the whole trained model

    def __init__(self, options, session, device, trainer):
        self.options = options
        self.session = session
        self.device = device
        self.trainer = trainer  # the config's trainer section
        self.model = None  # the module whose parameter names the checkpoints use
        self.train_model = None  # what the loop calls for the training forward pass

    # ------------------------------------------------------------------ set-up

    def prepare(self, model, make_optimizer: Callable, quantized: bool):
        """Place and wrap `model`; returns the optimizer that `make_optimizer(model)` builds for it."""
        if not quantized:  # bitsandbytes placed the quantized weights when loading
            model.to(self.device)
        self.model = self.train_model = model
        optimizer = make_optimizer(model)
        if self.session.world_size > 1:
            self.train_model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = optimizer
        return optimizer

    def prepare_frozen(self, model):
        """Place a frozen model that every worker only forwards (a preference trainer's reference copy)."""
        return model.to(self.device)

    @property
    def precision(self) -> Precision:
        """What the trainer section's `precision` means on this worker's device."""
        return resolve_precision(self.trainer.precision, self.device)

    def autocast(self):
        """(autocast context, gradient scaler or None): bf16/fp16 autocast on GPUs, bf16 on CPUs that have it."""
        precision = self.precision
        if precision.autocast_dtype is None:
            return contextlib.nullcontext(), None
        return torch.autocast(self.device.type, dtype=precision.autocast_dtype), (self._grad_scaler() if precision.needs_grad_scaler else None)

    def _grad_scaler(self):
        return torch.amp.GradScaler("cuda")

    # ------------------------------------------------------------------ one step

    def micro_batch(self, last_of_step: bool):
        """Context for one micro-batch's forward and backward: DDP all-reduces gradients only on the
        micro-batch that completes an optimizer step."""
        if last_of_step or self.session.world_size == 1:
            return contextlib.nullcontext()
        return self.train_model.no_sync()

    def backward(self, loss, scaler) -> None:
        (scaler.scale(loss) if scaler else loss).backward()

    def optimizer_step(self, scheduler, max_grad_norm: float, scaler) -> None:
        optimizer = self.optimizer
        if scaler:
            scaler.unscale_(optimizer)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ state (collective)

    def trainable_state(self) -> Dict[str, object]:
        """Full trainable weights on CPU, by parameter name. Collective; complete at least on rank 0."""
        if not self.session.is_main:  # every worker holds the same weights, and only rank 0 writes them
            return {}
        return {name: p.detach().cpu().contiguous() for name, p in self.model.named_parameters() if p.requires_grad}

    def optimizer_state(self) -> dict:
        """The optimizer state by parameter name, full, on CPU. Collective; complete at least on rank 0."""
        if not self.sharded and not self.session.is_main:
            return {}
        return get_optimizer_state_dict(self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, state: dict) -> None:
        if state["state"] and all(isinstance(key, int) for key in state["state"]):  # written by optimizer.state_dict()
            self.optimizer.load_state_dict(state)
            return
        set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(full_state_dict=True))


class FSDPStrategy(Strategy):
    """PyTorch FSDP2: every decoder layer, then the whole model, is a `fully_shard` unit."""

    sharded = True

    def prepare(self, model, make_optimizer, quantized):
        mesh = init_device_mesh(self.device.type, (self.session.world_size,))
        offload = CPUOffloadPolicy() if self.options.cpu_offload else OffloadPolicy()
        if not self.options.cpu_offload:
            model.to(self.device)
        shard = dict(mesh=mesh, reshard_after_forward=self.options.reshard_after_forward, offload_policy=offload)
        for layer in decoder_layers(model):
            fully_shard(layer, **shard)
        fully_shard(model, **shard)
        self.model = self.train_model = model
        self.optimizer = make_optimizer(model)  # after sharding: it must hold the sharded parameters
        return self.optimizer

    def prepare_frozen(self, model):
        # Sharded like the policy, so no worker holds it whole; its forward passes are then collective.
        mesh = init_device_mesh(self.device.type, (self.session.world_size,))
        model.to(self.device)
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def _grad_scaler(self):
        # Each worker sees a shard of the gradients: the scaler must agree on "inf found" across workers.
        return ShardedGradScaler()

    def micro_batch(self, last_of_step: bool):
        return _gradient_sync(self.model, last_of_step)

    def trainable_state(self):
        # Gathers the trainable parameters only: with an adapter, the frozen base never leaves its shards.
        return {name: _full_tensor(p, self.device).detach().cpu().contiguous()
                for name, p in self.model.named_parameters() if p.requires_grad}


class DeepSpeedStrategy(Strategy):
    """DeepSpeed ZeRO (stage 1, 2 or 3) through `deepspeed.initialize` around our own optimizer.

    The loop keeps the schedule and the accumulation: DeepSpeed is told where each optimizer step ends
    (`set_gradient_accumulation_boundary`), and the loss arrives already divided by the accumulation.
    """

    sharded = True

    def prepare(self, model, make_optimizer, quantized):
        import deepspeed  # the optional `deepspeed` extra: only this strategy imports it

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        model.to(self.device)
        optimizer = make_optimizer(model)
        # ZeRO swaps each group's parameters for flat partitions: remember the names for the checkpoints.
        self.group_names = _group_parameter_names(model, optimizer)
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=self._deepspeed_config(),
                                                    dist_init_required=False)
        self.model = model
        self.train_model = self.engine
        self.optimizer = optimizer  # the learning-rate schedule still drives its param_groups
        return optimizer

    def _deepspeed_config(self) -> dict:
        trainer = self.trainer
        options = self.options
        zero: dict = {"stage": options.zero_stage}
        if options.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if options.offload_parameters:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
        per_worker = -(-trainer.batch_size // self.session.world_size)
        config = {
            "train_micro_batch_size_per_gpu": per_worker,
            "gradient_accumulation_steps": trainer.gradient_accumulation_steps,
            "train_batch_size": per_worker * trainer.gradient_accumulation_steps * self.session.world_size,
            "gradient_clipping": trainer.max_grad_norm or 0.0,
            "zero_optimization": zero,
            "zero_allow_untested_optimizer": True,  # torch's AdamW: DeepSpeed's fused one needs compiled kernels
            "zero_force_ds_cpu_optimizer": False,
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        compute = self.precision.compute_dtype
        if compute == torch.bfloat16:
            config["bf16"] = {"enabled": True}
        elif compute == torch.float16:
            config["fp16"] = {"enabled": True}
        return config

    def autocast(self):
        return contextlib.nullcontext(), None  # DeepSpeed casts the model itself (its bf16/fp16 sections)

    def micro_batch(self, last_of_step):
        self.engine.set_gradient_accumulation_boundary(last_of_step)
        return contextlib.nullcontext()

    def backward(self, loss, scaler):
        self.engine.backward(loss, scale_wrt_gas=False)

    def optimizer_step(self, scheduler, max_grad_norm, scaler):
        self.engine.step()  # clips (gradient_clipping), steps and zeroes the gradients
        scheduler.step()

    def zero_grad(self):
        pass  # engine.step() did

    def trainable_state(self):
        from deepspeed.utils import safe_get_full_fp32_param

        state = {}
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                state[name] = safe_get_full_fp32_param(param).detach().cpu().contiguous()
        return state

    def optimizer_state(self):
        from deepspeed.utils import safe_get_full_optimizer_state

        step = self._optimizer_step_count()
        parameters = dict(self.model.named_parameters())
        state = {}
        for names in self.group_names:
            for name in names:
                entry = {key: safe_get_full_optimizer_state(parameters[name], key).detach().cpu() for key in ("exp_avg", "exp_avg_sq")}
                state[name] = {"step": step.clone(), **entry}
        groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": list(names)}
                  for group, names in zip(self.optimizer.param_groups, self.group_names)]
        return {"state": state, "param_groups": groups}

    def load_optimizer_state(self, state):
        from deepspeed.utils import safe_set_full_optimizer_state

        self._materialize_optimizer_state()
        parameters = dict(self.model.named_parameters())
        for names in self.group_names:
            for name in names:
                for key in ("exp_avg", "exp_avg_sq"):
                    safe_set_full_optimizer_state(parameters[name], state["state"][name][key].to(self.device), key)
        # The learning rate of the next step (and the other hyperparameters) as they were when saved.
        for group, saved in zip(self.optimizer.param_groups, state["param_groups"]):
            group.update({key: value for key, value in saved.items() if key != "params"})
        step = next(iter(state["state"].values()))["step"] if state["state"] else torch.tensor(0.0)
        for entry in self.optimizer.state.values():
            entry["step"] = step.clone().to(entry["step"].device) if torch.is_tensor(entry.get("step")) else float(step)

    def _optimizer_step_count(self):
        for entry in self.optimizer.state.values():
            if "step" in entry:
                step = entry["step"]
                return step.detach().cpu().clone() if torch.is_tensor(step) else torch.tensor(float(step))
        return torch.tensor(0.0)

    def _materialize_optimizer_state(self) -> None:
        """Create AdamW's (lazily built) state on ZeRO's flat fp32 partitions, so saved values can be copied
        in: one step with zero gradients at learning rate 0 and no weight decay, which moves no weight."""
        optimizer, zero = self.optimizer, self.engine.optimizer
        flats = getattr(zero, "fp32_partitioned_groups_flat", None)
        if flats is not None:  # ZeRO-3 hands each flat partition to the optimizer only for its own step
            partitions = [(zero.sub_group_to_group_id[i], flat) for i, flat in enumerate(flats)]
        else:  # ZeRO-1/2: the groups hold their flat partitions
            partitions = [(i, p) for i, group in enumerate(optimizer.param_groups) for p in group["params"]]
        if all(optimizer.state.get(flat) for _, flat in partitions):
            return
        for group_index, flat in partitions:
            group = optimizer.param_groups[group_index]
            saved = group["params"], group["lr"], group["weight_decay"]
            group["params"], group["lr"], group["weight_decay"] = [flat], 0.0, 0.0
            flat.grad = torch.zeros_like(flat)
            optimizer.step()
            flat.grad = None
            group["params"], group["lr"], group["weight_decay"] = saved
        # ZeRO-1/2 link each parameter to its slice of the optimizer state when the state first appears.
        link = getattr(zero, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:
            link()


def create_strategy(config, session, device) -> Strategy:
    """The strategy of the config's Ray backend; one process or DDP everywhere else."""
    from ludwig_llm.schema.backends import DDPStrategyConfig

    options = config.backend.trainer.strategy if config.backend.type == "ray" else DDPStrategyConfig()
    if options.type != "ddp" and session.world_size == 1:
        options = DDPStrategyConfig()  # nothing to shard over: one worker holds the whole model either way
    return load_implementation(options)(options, session, device, config.trainer)


def copy_trainable_state(model, state: Dict[str, object]) -> None:
    """Copy full trainable weights, by name, into a model that is not sharded."""
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise RuntimeError(f"checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def decoder_layers(model) -> List[object]:
    """The repeated transformer blocks, as transformers names them for device maps (`_no_split_modules`)."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise RuntimeError(f"cannot find the decoder layers of {type(model).__name__} to shard (no _no_split_modules).")
    return layers


def _full_tensor(param, device):
    """The whole of a (possibly sharded) parameter, gathered from every worker. Collective for DTensors."""
    if not isinstance(param, DTensor):
        return param
    if param.device.type != device.type:  # CPU-offloaded shards: gather them where the process group works
        param = DTensor.from_local(param.to_local().to(device), param.device_mesh, param.placements,
                                   shape=param.shape, stride=param.stride())
    return param.full_tensor()


@contextlib.contextmanager
def _gradient_sync(model, enabled: bool):
    model.set_requires_gradient_sync(enabled)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _group_parameter_names(model, optimizer) -> List[List[str]]:
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [[name_of[id(p)] for p in group["params"]] for group in optimizer.param_groups]
