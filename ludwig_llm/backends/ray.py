"""The Ray backend: fine-tuning with Ray Train, batch prediction with Ray Data.

Training runs the local backend's loop (`run_finetune`) unchanged in every Ray Train worker; only
the session differs. `RaySession` takes rank and world size from Ray Train, turns checkpoints and
the final model into Ray Train checkpoints (rank 0 writes the files, every rank reports), and
restores the latest one when Ray Train restarts a failed worker group. On the driver, a Ray Train
callback mirrors every training checkpoint into `<run>/checkpoints/` as it is reported, and the
final model checkpoint becomes `<run>/model`, so the run directory is the same as a local run's:
`predict`, `evaluate` and `--resume` work on it unchanged. Ray Train's own storage is `<run>/ray/`.

Batch prediction renders and tokenizes the prompts here, with the local code, then sends the token
ids through Ray Data `map_batches` to a pool of actors, each holding one copy of the model and
running the local prediction code on its batches. A row index travels with every row, and the
result is sorted by it, so predictions come back in input order.

Before anything is scheduled, the resources asked for are compared with what the cluster has, so a
config that can never be placed fails at once instead of waiting forever.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional

from ludwig_llm.backends.session import CHECKPOINT_PREFIX, WorkerSession, list_checkpoints, write_directory_atomically
from ludwig_llm.errors import UserError
from ludwig_llm.results import CHECKPOINTS_DIR, MODEL_DIR
from ludwig_llm.trainers.checkpoint import STATE_FILE  # a training checkpoint has it; the final model does not

try:
    from ray.train import UserCallback as _UserCallback
except ImportError:  # Ray is an extra (pip install "ludwig_llm[ray]"); connect() says so when it is used
    _UserCallback = object

RAY_DIR = "ray"  # Ray Train's storage inside the run directory
TRAIN_RUN_NAME = "train"  # one Ray Train run per `train` call: train, train_1, ... (a --resume adds one)
RETRIEVAL_DIR = "retrieval"  # the few-shot index, where every worker can read it
MODEL_CHECKPOINT_NAME = "model"
KIND = "ludwig_llm_kind"  # metric saying what a Ray Train report carries: checkpoint, model or metrics
ROW_COLUMN = "__ludwig_llm_row__"
IDS_COLUMN = "__ludwig_llm_prompt_ids__"

logger = logging.getLogger(__name__)

# Test hook, read on the driver: "RANK:STEP:MARKER". The worker of that rank exits abruptly at its first
# checkpoint at or after STEP, before reporting it (once the earlier checkpoints are committed), unless
# MARKER exists (it creates it first): the failure happens once, and Ray Train's recovery from the previous
# checkpoint can be observed. Never set it outside tests.
FAIL_ONCE_ENV = "LUDWIG_LLM_RAY_FAIL_ONCE"

# Quieted in Ray's worker processes: Ray Train's placement group cleaner polls the state API, which needs
# the dashboard (`ray[default]`), and without it warns every few seconds; every report is logged at INFO,
# by a logger named after its module's file path.
_NOISY_LOGGERS = {
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
    os.path.join("train", "v2", "_internal", "execution", "context.py"): logging.WARNING,  # under ray's package
}


# ---------------------------------------------------------------------------------------------
# Connecting and checking resources


def quiet_ray_logs() -> None:
    """Runs in every Ray worker process (`worker_process_setup_hook`) and in the driver."""
    import ray

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
    try:
        import ray
    except ImportError as error:
        raise UserError('backend type "ray" needs Ray: pip install "ludwig_llm[ray]".') from error

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
    import ray

    cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [{k: float(v) for k, v in n.get("Resources", {}).items()} for n in ray.nodes() if n.get("Alive")]
    autoscaling = False
    try:  # an autoscaling cluster can grow to what its launcher config allows
        from ray._private.state import state

        maximum = state.get_max_resources_from_cluster_config()
    except Exception:  # private API: absent or failing means "not autoscaling"
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


# ---------------------------------------------------------------------------------------------
# The backend (driver side)


class RayBackend:
    def __init__(self, config):
        self.config = config
        self.options = config.backend

    # ------------------------------------------------------------------ training

    def run_finetune(self, job, run_directory: str, resume_from: Optional[str]) -> dict:
        import ray
        import ray.train
        from ray.train.torch import TorchConfig, TorchTrainer

        trainer_options = self.options.trainer
        if trainer_options.strategy.type == "deepspeed":
            try:
                import deepspeed  # noqa: F401  (only asking whether the workers' environment can have it)
            except ImportError as error:
                raise UserError('backend.trainer.strategy: "deepspeed" needs DeepSpeed: pip install deepspeed '
                                '(on every node of the cluster).') from error
        connect(self.options.address)
        resources = worker_resources(trainer_options)
        check_cluster_resources("training", trainer_options.num_workers, resources,
                                settings="backend.trainer (num_workers, use_gpu, resources_per_worker)")

        run_directory = os.path.abspath(run_directory)
        storage = os.path.join(run_directory, RAY_DIR)
        os.makedirs(storage, exist_ok=True)
        job = _portable_job(job, storage)
        keep = self.config.trainer.checkpoints_to_keep
        loop_config = {
            "job": ray.put(job),
            "resume_from": os.path.abspath(resume_from) if resume_from else None,
            "fail_once": os.environ.get(FAIL_ONCE_ENV),
        }
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config=loop_config,
            torch_config=TorchConfig(backend="nccl" if trainer_options.use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=trainer_options.num_workers, use_gpu=trainer_options.use_gpu,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name=_new_run_name(storage),
                storage_path=storage,
                failure_config=ray.train.FailureConfig(max_failures=trainer_options.max_failures),
                # +1: the final model is reported as a checkpoint too, after the last training one.
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep + 1),
                callbacks=[CheckpointMirror(run_directory, keep)],
            ),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as error:
            raise _user_error_inside(error) or error

        statistics = dict(result.return_value or {})
        if job.save_model:
            model = _model_checkpoint(result)
            if model is None:
                raise RuntimeError(f"the Ray Train run in {result.path} finished without reporting the final model.")
            write_directory_atomically(os.path.join(run_directory, MODEL_DIR), lambda d: copy_checkpoint(model, d))
        statistics.setdefault("distributed", {})["ray_train_run"] = result.path
        return statistics

    # ------------------------------------------------------------------ prediction

    def predict_rows(self, model_directory: str, prompt_ids: List[List[int]], batch_size: Optional[int] = None):
        """Predictions for tokenized prompts, computed by a pool of Ray Data actors; one row per prompt, in order."""
        import pandas as pd
        import ray.data

        options = self.options.processor
        connect(self.options.address)
        check_cluster_resources("batch prediction", options.num_actors, actor_resources(options),
                                settings="backend.processor (num_actors, num_cpus_per_actor, num_gpus_per_actor)")

        # One block per batch: every actor call gets exactly `options.batch_size` rows (the last fewer).
        blocks = [pd.DataFrame({ROW_COLUMN: range(start, min(start + options.batch_size, len(prompt_ids))),
                                IDS_COLUMN: [list(ids) for ids in prompt_ids[start:start + options.batch_size]]})
                  for start in range(0, len(prompt_ids), options.batch_size)]
        remote_args = {"num_cpus": options.num_cpus_per_actor}
        if options.num_gpus_per_actor:
            remote_args["num_gpus"] = options.num_gpus_per_actor
        predictions = ray.data.from_pandas(blocks).map_batches(
            PredictionActor,
            batch_size=options.batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=options.num_actors),
            fn_constructor_kwargs={"model_directory": os.path.abspath(model_directory), "batch_size": batch_size},
            **remote_args,
        )
        frame = predictions.to_pandas()
        if len(frame) != len(prompt_ids):
            raise RuntimeError(f"Ray Data returned {len(frame)} predictions for {len(prompt_ids)} rows.")
        return frame.sort_values(ROW_COLUMN, kind="stable").drop(columns=[ROW_COLUMN]).reset_index(drop=True)


def _new_run_name(storage: str) -> str:
    name, suffix = TRAIN_RUN_NAME, 0
    while os.path.exists(os.path.join(storage, name)):
        suffix += 1
        name = f"{TRAIN_RUN_NAME}_{suffix}"
    return name


def _portable_job(job, storage: str):
    """The job with paths that hold in a worker, whose working directory is Ray Train's, not ours."""
    changes = {}
    if os.path.isdir(job.base_model_path):
        changes["base_model_path"] = os.path.abspath(job.base_model_path)
    if job.retriever_directory:  # a temporary directory of this process: copy it next to the Ray Train storage
        target = os.path.join(storage, RETRIEVAL_DIR)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(job.retriever_directory, target)
        changes["retriever_directory"] = target
    return dataclasses.replace(job, **changes) if changes else job


def _model_checkpoint(result):
    for checkpoint, metrics in reversed(result.best_checkpoints or []):
        if metrics.get(KIND) == "model":
            return checkpoint
    return None


def _user_error_inside(error) -> Optional[UserError]:
    """The UserError a worker raised (a bad config or model found only there), to show as such."""
    for failure in getattr(error, "worker_failures", {}).values():
        seen = failure
        for _ in range(5):
            if isinstance(seen, UserError):
                return UserError(str(seen))
            seen = getattr(seen, "cause", None) or seen.__cause__
            if seen is None:
                break
    return None


def copy_checkpoint(checkpoint, directory: str) -> None:
    """Copy a Ray Train checkpoint's files into `directory`; hard links when on the same local file system."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and os.path.isdir(checkpoint.path):
        shutil.copytree(checkpoint.path, directory, dirs_exist_ok=True, copy_function=_link_or_copy)
    else:
        checkpoint.to_directory(directory)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class CheckpointMirror(_UserCallback):
    """Runs in the Ray Train controller, on the driver's node: copies each reported training checkpoint into
    `<run>/checkpoints/step-N` (keeping the newest `keep`), so `--resume` finds it as after a local run."""

    def __init__(self, run_directory: str, keep: int):
        self.run_directory = run_directory
        self.keep = keep

    def after_report(self, run_context, metrics, checkpoint):
        if checkpoint is None or not metrics or metrics[0].get(KIND) != "checkpoint":
            return
        root = os.path.join(self.run_directory, CHECKPOINTS_DIR)
        name = os.path.basename(checkpoint.path.rstrip("/"))
        try:
            write_directory_atomically(os.path.join(root, name), lambda d: copy_checkpoint(checkpoint, d))
            for old in list_checkpoints(root)[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as error:  # training goes on; Ray Train still holds the checkpoint in <run>/ray
            logger.warning("could not copy checkpoint %s into %s: %s", checkpoint.path, root, error)


# ---------------------------------------------------------------------------------------------
# Inside the training workers


class RaySession(WorkerSession):
    """One Ray Train worker's view of the run: checkpoints and the final model become Ray Train checkpoints.

    Every method that reports is called by every rank at the same point of the loop (Ray Train's report is
    a barrier); only rank 0 writes files.
    """

    def __init__(self, resume_from: Optional[str] = None, fail_once: Optional[str] = None):
        import ray.train

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.resume_from = resume_from
        self.fail_once = fail_once
        self.restored_from: Optional[dict] = None
        self._scratch: List[str] = []

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def report(self, metrics: dict) -> None:
        import ray.train

        ray.train.report({KIND: "metrics", **metrics})

    def save_checkpoint(self, write, step, metrics) -> None:
        self._maybe_fail(step)
        self._report_directory(write, {KIND: "checkpoint", **metrics}, f"{CHECKPOINT_PREFIX}{step:08d}")

    def save_model(self, write, metrics) -> None:
        self._report_directory(write, {KIND: "model", **metrics}, MODEL_CHECKPOINT_NAME)

    def latest_checkpoint(self) -> Optional[str]:
        """After a worker failure, the latest checkpoint Ray Train kept; else the one `--resume` asked for."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and not _is_training_checkpoint(checkpoint):
            # The final model was reported after the last training checkpoint: restart from that one.
            checkpoint = _latest_training_checkpoint()
        if checkpoint is not None:
            directory = self._local_directory(checkpoint)
            self.restored_from = {"source": "ray_train", "checkpoint": os.path.basename(checkpoint.path.rstrip("/")),
                                  "step": _checkpoint_step(directory)}
        elif self.resume_from:
            directory = self.resume_from
            self.restored_from = {"source": "resume", "checkpoint": os.path.basename(directory.rstrip("/")),
                                  "step": _checkpoint_step(directory)}
        else:
            return None
        if self.is_main:  # logging, not print: Ray Train's print patch would show it twice
            logger.warning("ludwig_llm: continuing from checkpoint %s (step %s, %s).", self.restored_from["checkpoint"],
                           self.restored_from["step"], self.restored_from["source"])
        return directory

    def summary(self) -> dict:
        return {"backend": "ray", "workers": self.world_size, "restored_from": self.restored_from}

    def cleanup(self) -> None:
        for directory in self._scratch:
            shutil.rmtree(directory, ignore_errors=True)

    def _report_directory(self, write, metrics: dict, name: str) -> None:
        import ray.train

        if not self.is_main:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
            return
        with tempfile.TemporaryDirectory(prefix="ludwig_llm_ray_") as directory:
            write(directory)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory), checkpoint_dir_name=name)

    def _local_directory(self, checkpoint) -> str:
        import pyarrow.fs

        if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and os.path.isdir(checkpoint.path):
            return checkpoint.path
        directory = tempfile.mkdtemp(prefix="ludwig_llm_restore_")
        self._scratch.append(directory)
        checkpoint.to_directory(directory)
        return directory

    def _maybe_fail(self, step: int) -> None:
        if not self.fail_once:
            return
        rank, at_step, marker = self.fail_once.split(":", 2)
        if self.rank == int(rank) and step >= int(at_step) and not os.path.exists(marker):
            import ray.train

            ray.train.get_all_reported_checkpoints(timeout_s=120)  # the earlier checkpoints are committed first
            with open(marker, "w", encoding="utf-8") as f:
                f.write(f"rank {self.rank} exited at step {step}\n")
            logger.warning("ludwig_llm: %s: worker %s exits at step %s.", FAIL_ONCE_ENV, self.rank, step)
            logging.shutdown()
            os._exit(1)


def _is_training_checkpoint(checkpoint) -> bool:
    return checkpoint.filesystem.get_file_info(os.path.join(checkpoint.path, STATE_FILE)).is_file


def _latest_training_checkpoint():
    import ray.train

    reported = ray.train.get_all_reported_checkpoints()
    training = [r.checkpoint for r in reported if (r.metrics or {}).get(KIND) == "checkpoint"]
    return training[-1] if training else None


def _checkpoint_step(directory: str) -> Optional[int]:
    import json

    try:
        with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as f:
            return json.load(f)["step"]
    except (OSError, KeyError, ValueError):
        return None


def _train_worker(loop_config: dict) -> dict:
    """The Ray Train worker function: the local training loop with a RaySession."""
    import ray

    from ludwig_llm.trainers.finetune import run_finetune

    job = loop_config["job"]
    job = ray.get(job) if isinstance(job, ray.ObjectRef) else job
    session = RaySession(loop_config.get("resume_from"), loop_config.get("fail_once"))
    try:
        statistics = run_finetune(job, session)
    finally:
        session.cleanup()
    statistics["distributed"] = session.summary()
    return statistics


# ---------------------------------------------------------------------------------------------
# Inside the prediction actors


class PredictionActor:
    """One model replica in the Ray Data actor pool; predicts a batch of tokenized prompts with the local code."""

    def __init__(self, model_directory: str, batch_size: Optional[int] = None):
        from ludwig_llm.models.bundle import load_model_directory

        quiet_ray_logs()
        self.config, self.manifest, self.built = load_model_directory(model_directory)
        self.batch_size = batch_size or self.config.trainer.eval_batch_size

    def __call__(self, batch):
        from ludwig_llm.inference.predict import _predict_from_ids

        prompt_ids = [[int(token) for token in ids] for ids in batch[IDS_COLUMN]]
        predictions = _predict_from_ids(self.config, self.manifest, self.built, prompt_ids, self.batch_size, progress=False)
        predictions.insert(0, ROW_COLUMN, batch[ROW_COLUMN].to_numpy())
        return predictions
