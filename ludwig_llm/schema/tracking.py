"""Tracking section: where a fine-tuning run's loss, learning rate and validation metrics are logged."""

from __future__ import annotations

from typing import Optional

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option


@config_class
class TrackingConfig(BaseConfig):
    """Experiment tracking of fine-tuning runs. TensorBoard is on by default; MLflow and Weights & Biases are opt-in."""

    title = "Tracking"
    tensorboard: bool = option(
        True, "Write TensorBoard event files into the run directory's `tensorboard/` (`tensorboard --logdir results`).",
        impact=Impact.LOW,
    )
    mlflow: bool = option(False, "Log the run to MLflow (needs the `mlflow` package).", impact=Impact.LOW)
    mlflow_tracking_uri: Optional[str] = option(
        None, "MLflow tracking server or store, e.g. `http://mlflow:5000`. Null: a local file store `mlruns/` next to "
        "the run directories.", example="http://127.0.0.1:5000", impact=Impact.LOW,
    )
    mlflow_experiment: Optional[str] = option(
        None, "MLflow experiment name. Null: the run directory's name without its number.", impact=Impact.LOW,
    )
    wandb: bool = option(False, "Log the run to Weights & Biases (needs the `wandb` package).", impact=Impact.LOW)
    wandb_project: str = option("ludwig_llm", "Weights & Biases project.", impact=Impact.LOW)
    wandb_mode: str = option(
        "online", "`online` sends to the W&B server (log in first, or set WANDB_API_KEY); `offline` writes the run "
        "under the run directory's `wandb/` for a later `wandb sync`.", choices=["online", "offline"], impact=Impact.LOW,
    )
