"""The Ray backend: fine-tuning with Ray Train, batch prediction with Ray Data.

Imported only when `backend.type` is `ray` (see ``ludwig_llm.backends``). The driver side lives here; the
training workers' session and checkpoint mirroring in `ray_session`, the prediction actors in
`ray_prediction`, and connecting and resource checks in `ray_cluster`. The run directory comes out the
same as a local run's: the final model checkpoint becomes `<run>/model`, so `predict`, `evaluate` and
`--resume` work on it unchanged. Ray Train's own storage is `<run>/ray/`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from typing import Optional

import ray
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from ludwig_llm.backends.base import Backend
from ludwig_llm.backends.ray_cluster import check_cluster_resources, connect, worker_resources
from ludwig_llm.backends.ray_prediction import predict_on_actors, teacher_forced_on_actors
from ludwig_llm.backends.ray_session import FAIL_ONCE_ENV, CheckpointMirror, copy_checkpoint, model_checkpoint, train_worker
from ludwig_llm.data.retrieval import RETRIEVAL_DIR
from ludwig_llm.errors import UserError
from ludwig_llm.results import MODEL_DIR, write_directory_atomically

RAY_DIR = "ray"  # Ray Train's storage inside the run directory
TRAIN_RUN_NAME = "train"  # one Ray Train run per `train` call: train, train_1, ... (a --resume adds one)


class RayBackend(Backend):
    lazy_model = True  # the prediction actors load the model; the driver only renders and tokenizes

    def __init__(self, config):
        super().__init__(config)
        self.options = config.backend

    def run_workers(self, worker, job, run_directory: str, resume_from: Optional[str]) -> dict:
        trainer_options = self.options.trainer
        strategy = trainer_options.strategy
        if strategy.needs_package and importlib.util.find_spec(strategy.needs_package) is None:
            raise UserError(f'backend.trainer.strategy: "{strategy.type}" needs {strategy.needs_package}: '
                            f'pip install {strategy.needs_package} (on every node of the cluster).')
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
            "worker": worker,
            "job": ray.put(job),
            "resume_from": os.path.abspath(resume_from) if resume_from else None,
            "fail_once": os.environ.get(FAIL_ONCE_ENV),
        }
        trainer = TorchTrainer(
            train_worker,
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
            model = model_checkpoint(result)
            if model is None:
                raise RuntimeError(f"the Ray Train run in {result.path} finished without reporting the final model.")
            write_directory_atomically(os.path.join(run_directory, MODEL_DIR), lambda d: copy_checkpoint(model, d))
        statistics.setdefault("distributed", {})["ray_train_run"] = result.path
        return statistics

    def predict_from_ids(self, model, prompt_ids, batch_size: int):
        return predict_on_actors(self.options.processor, self.options.address, model.directory, prompt_ids, batch_size)

    def teacher_forced_statistics(self, model, rows, batch_size: int) -> dict:
        return teacher_forced_on_actors(self.options.processor, self.options.address, model.directory, rows, batch_size)


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
