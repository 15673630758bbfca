"""Experiment tracking of fine-tuning runs: TensorBoard event files (on by default), MLflow and Weights & Biases.

Every tracker takes the same three calls (`log_config`, `log_metrics(metrics, step)`, `close`), and
`RunTrackers` feeds them records shaped like `training_statistics.json`'s: `on_step` for a logged
training step (`loss`, `learning_rate`), `on_evaluation` for a validation pass, `on_test` for the
test metrics. Metric names: `train/loss`, `train/learning_rate`, `validation/<metric>`,
`test/<feature>/<metric>`.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Dict, List, Optional

from torch.utils.tensorboard import SummaryWriter

from ludwig_llm.errors import UserError

TENSORBOARD_DIR = "tensorboard"
_MAX_PARAM_LENGTH = 500


def _numbers(values: Dict[str, Any], prefix: str) -> Dict[str, float]:
    return {f"{prefix}{name}": float(value) for name, value in (values or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def flatten_config(config: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """{"trainer.learning_rate": "0.0001", ...}: the config as tracker parameters (unset values left out)."""
    flat: Dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif value is not None:
            flat[name] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


class TensorBoardTracker:
    def __init__(self, run_directory: str):
        self.writer = SummaryWriter(log_dir=os.path.join(run_directory, TENSORBOARD_DIR))

    def log_config(self, config: Dict[str, Any]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in flatten_config(config).items())
        self.writer.add_text("config", "| key | value |\n| --- | --- |\n" + table)

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(self, run_directory: str, tracking_uri: Optional[str], experiment: Optional[str]):
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError("tracking.mlflow is on but the mlflow package is missing: pip install mlflow.") from None
        self._Metric, self._Param = Metric, Param
        uri = tracking_uri or "file:" + os.path.join(os.path.dirname(os.path.abspath(run_directory)), "mlruns")
        if uri.startswith("file:") or "://" not in uri:
            # A local file store is what tracking.mlflow_tracking_uri's default promises; MLflow 3 asks for this opt-in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        name = experiment or re.sub(r"_\d+$", "", os.path.basename(os.path.abspath(run_directory)))
        found = self.client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=os.path.basename(os.path.abspath(run_directory)),
                                             tags={"ludwig_llm.run_directory": os.path.abspath(run_directory)}).info.run_id

    def log_config(self, config: Dict[str, Any]) -> None:
        params = [self._Param(k, v) for k, v in flatten_config(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self._Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker:
    def __init__(self, run_directory: str, project: str, mode: str):
        try:
            import wandb
        except ImportError:
            raise UserError("tracking.wandb is on but the wandb package is missing: pip install wandb.") from None
        self.run = wandb.init(project=project, mode=mode, dir=run_directory, name=os.path.basename(os.path.abspath(run_directory)),
                              settings=wandb.Settings(silent=True), reinit="create_new")

    def log_config(self, config: Dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class RunTrackers:
    """The trackers a config's `tracking` section turns on, behind one set of callbacks."""

    def __init__(self, trackers: List[Any]):
        self.trackers = trackers

    @classmethod
    def open(cls, config, run_directory: str) -> "RunTrackers":
        tracking = config.tracking
        trackers: List[Any] = []
        if tracking.tensorboard:
            trackers.append(TensorBoardTracker(run_directory))
        if tracking.mlflow:
            trackers.append(MLflowTracker(run_directory, tracking.mlflow_tracking_uri, tracking.mlflow_experiment))
        if tracking.wandb:
            trackers.append(WandbTracker(run_directory, tracking.wandb_project, tracking.wandb_mode))
        return cls(trackers)

    def log_config(self, config_dict: Dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_config(config_dict)

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if metrics:
            for tracker in self.trackers:
                tracker.log_metrics(metrics, step)

    def on_step(self, entry: Dict[str, Any]) -> None:
        """A logged training step: {"step", "epoch", "loss", "learning_rate"}."""
        self.log_metrics(_numbers({k: entry.get(k) for k in ("loss", "learning_rate")}, "train/"), entry["step"])

    def on_evaluation(self, entry: Dict[str, Any]) -> None:
        """A validation pass: {"step", "epoch", "validation": {metric: value}}."""
        self.log_metrics(_numbers(entry.get("validation"), "validation/"), entry["step"])

    def on_test(self, test_statistics: Dict[str, Any], step: int) -> None:
        for feature, metrics in (test_statistics or {}).items():
            self.log_metrics(_numbers(metrics, f"test/{feature}/"), step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def track_finished_run(config, run_directory: str, statistics: Dict[str, Any],
                       test_statistics: Optional[Dict[str, Any]] = None) -> None:
    """Send a finished fine-tuning run's statistics to its trackers, in step order (steps before evaluations of a step)."""
    steps, evaluations = statistics.get("steps") or [], statistics.get("evaluations") or []
    if not steps and not evaluations:
        return  # nothing was trained (trainer none)
    trackers = RunTrackers.open(config, run_directory)
    try:
        trackers.log_config(config.to_dict())
        records = [(entry["step"], 0, entry) for entry in steps] + [(entry["step"], 1, entry) for entry in evaluations]
        for _, kind, entry in sorted(records, key=lambda record: record[:2]):
            (trackers.on_evaluation if kind else trackers.on_step)(entry)
        if test_statistics:
            trackers.on_test(test_statistics, max(record[0] for record in records))
    finally:
        trackers.close()
