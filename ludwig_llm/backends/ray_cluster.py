"""Connecting to a Ray cluster, and checking what a job asks for against what the cluster has.

Before anything is scheduled, the resources asked for are compared with what the cluster has, so a
config that can never be placed fails at once instead of waiting forever.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional

import ray

from ludwig_llm.errors import UserError

try:  # private API: tells how far an autoscaling cluster can grow
    from ray._private.state import state as _cluster_state
except ImportError:
    _cluster_state = None

# Quieted in Ray's worker processes: Ray Train's placement group cleaner polls the state API, which needs
# the dashboard (`ray[default]`), and without it warns every few seconds; every report is logged at INFO,
# by a logger named after its module's file path.
_NOISY_LOGGERS = {
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
    os.path.join("train", "v2", "_internal", "execution", "context.py"): logging.WARNING,  # under ray's package
}


def quiet_ray_logs() -> None:
    """Runs in every Ray worker process (`worker_process_setup_hook`) and in the driver."""
    for name, level in _NOISY_LOGGERS.items():
        if name.endswith(".py"):
            name = os.path.join(os.path.dirname(ray.__file__), name)
        logging.getLogger(name).setLevel(level)


def connect(address: Optional[str] = None) -> None:
    """Connect to the cluster at `address` (else `RAY_ADDRESS`), or start Ray on this machine with all its CPUs and GPUs.

    Does nothing when Ray is already initialized in this process. Without an address, `ray.init` also joins a
    cluster that `ray start` began on this machine (a cluster's head node); only when there is none does it
    start one, sized by Ray to this machine (its CPUs, within any container limit, and its GPUs). Resources
    are not passed explicitly: Ray refuses them when it joins an existing cluster.
    """
    quiet_ray_logs()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
        runtime_env={"worker_process_setup_hook": quiet_ray_logs},
    )
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as error:
        raise UserError(f"cannot connect to the Ray cluster at {address!r}: {error}") from error


def worker_resources(options) -> Dict[str, float]:
    """Resources of one training worker, as Ray Train computes them from ScalingConfig."""
    if options.resources_per_worker is None:
        resources = {"GPU": 1.0} if options.use_gpu else {"CPU": 1.0}
    else:
        resources = {key: float(value) for key, value in options.resources_per_worker.items() if value}
    if options.use_gpu:
        resources.setdefault("GPU", 1.0)
    return resources


def actor_resources(options) -> Dict[str, float]:
    """Resources of one prediction actor."""
    resources = {"CPU": float(options.num_cpus_per_actor)}
    if options.num_gpus_per_actor:
        resources["GPU"] = float(options.num_gpus_per_actor)
    return resources


def check_cluster_resources(what: str, count: int, per_unit: Dict[str, float], cluster: Optional[Dict[str, float]] = None,
                            nodes: Optional[List[Dict[str, float]]] = None, autoscaling: bool = False,
                            settings: str = "the backend section") -> None:
    """Raise a UserError when `count` units of `per_unit` resources can never be placed on the cluster.

    `cluster` is the cluster's total (or, on an autoscaling cluster, the most it can grow to) and `nodes`
    each live node's resources; by default both are read from Ray. A unit must also fit on one node,
    unless the cluster autoscales (a larger node may still be added).
    """
    if cluster is None:
        cluster, nodes, autoscaling = _cluster_capacity()
    unit = ", ".join(f"{name}: {_number(amount)}" for name, amount in sorted(per_unit.items()))
    for name, amount in sorted(per_unit.items()):
        needed, available = amount * count, float(cluster.get(name, 0.0))
        if needed > available + 1e-9:
            raise UserError(
                f"{what} asks for {count} × {{{unit}}} = {_number(needed)} {name}, but the Ray cluster has "
                f"{_number(available)} {name} in all ({_describe(cluster)}). Ask for less in {settings}, "
                f"or use a larger cluster."
            )
    if nodes and not autoscaling and not any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in per_unit.items()) for node in nodes):
        raise UserError(
            f"{what}: each of the {count} needs {{{unit}}}, but no node of the Ray cluster has that much "
            f"(nodes: {'; '.join(_describe(n) for n in nodes)}). Ask for less in {settings}."
        )


def _cluster_capacity():
    cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [{k: float(v) for k, v in n.get("Resources", {}).items()} for n in ray.nodes() if n.get("Alive")]
    autoscaling = False
    try:  # an autoscaling cluster can grow to what its launcher config allows
        maximum = _cluster_state.get_max_resources_from_cluster_config() if _cluster_state is not None else None
    except Exception:  # a failing private API means "not autoscaling"
        maximum = None
    if maximum:
        autoscaling = True
        cluster = {k: max(cluster.get(k, 0.0), float(maximum.get(k, 0.0))) for k in set(cluster) | set(maximum)}
    return cluster, nodes, autoscaling


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _describe(resources: Dict[str, float]) -> str:
    shown = [f"{name}: {_number(resources.get(name, 0.0))}" for name in ("CPU", "GPU")]
    return ", ".join(shown + [f"{k}: {_number(v)}" for k, v in sorted(resources.items())
                              if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")
                              and not k.startswith("accelerator_type")])
