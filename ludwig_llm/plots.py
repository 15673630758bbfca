"""Plots of runs as PNG files: learning curves (one run or several side by side) and confusion matrices.

matplotlib's Figure is used without pyplot, so no GUI backend is touched and plotting works on a
headless machine and from threads.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ludwig_llm.errors import UserError
from ludwig_llm.results import TRAINING_STATISTICS, read_json, write_file_atomically

LEARNING_CURVES = "learning_curves.png"


def _curves(statistics: dict) -> Dict[str, Dict[str, List]]:
    """{metric: {"training" | "validation": (steps, values)}} of one run's training statistics."""
    curves: Dict[str, Dict[str, List]] = {}
    for entry in statistics.get("steps", []):
        for name in ("loss", "learning_rate"):
            if isinstance(entry.get(name), (int, float)):
                steps, values = curves.setdefault(name, {}).setdefault("training", ([], []))
                steps.append(entry["step"])
                values.append(entry[name])
    for entry in statistics.get("evaluations", []):
        for name, value in (entry.get("validation") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                steps, values = curves.setdefault(name, {}).setdefault("validation", ([], []))
                steps.append(entry["step"])
                values.append(value)
    return curves


def plot_learning_curves(runs: Dict[str, dict], path: str) -> Optional[str]:
    """One panel per metric, every run's curve in it (training solid, validation dashed); None if nothing was logged."""
    per_run = {name: _curves(statistics) for name, statistics in runs.items()}
    metrics = sorted({metric for curves in per_run.values() for metric in curves}, key=lambda m: (m != "loss", m))
    if not metrics:
        return None
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, metric in zip(axes, metrics):
        for index, (run, curves) in enumerate(per_run.items()):
            color = f"C{index % 10}"
            for split, style in (("training", "-"), ("validation", "--")):
                if split in curves.get(metric, {}):
                    steps, values = curves[metric][split]
                    ax.plot(steps, values, style, color=color, marker="." if len(steps) < 30 else None,
                            label=f"{run} ({split})" if len(per_run) > 1 else split)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    write_file_atomically(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    return path


def write_learning_curves(run_directory: str) -> Optional[str]:
    """learning_curves.png in a run directory, from its training statistics (None when no step was logged)."""
    statistics_path = os.path.join(run_directory, TRAINING_STATISTICS)
    if not os.path.isfile(statistics_path):
        return None
    return plot_learning_curves({os.path.basename(run_directory.rstrip(os.sep)): read_json(statistics_path)},
                                os.path.join(run_directory, LEARNING_CURVES))


def compare_runs(run_directories: List[str], output: str) -> str:
    """The learning curves of several runs side by side in one PNG (`ludwig_llm visualize`)."""
    runs = {}
    for directory in run_directories:
        statistics_path = os.path.join(directory, TRAINING_STATISTICS)
        if not os.path.isfile(statistics_path):
            raise UserError(f"--run {directory}: not a run directory (no {TRAINING_STATISTICS}).")
        name = os.path.basename(os.path.abspath(directory))
        runs[name if name not in runs else directory] = read_json(statistics_path)
    if plot_learning_curves(runs, output) is None:
        raise UserError(f"no training steps were logged in {', '.join(run_directories)} (trainer 'none' trains nothing).")
    return output


def write_confusion_matrices(directory: str, test_statistics: dict) -> List[str]:
    """confusion_matrix_<feature>.png for each output feature whose statistics hold a confusion matrix."""
    written = []
    for feature, metrics in test_statistics.items():
        matrix = (metrics or {}).get("confusion_matrix") if isinstance(metrics, dict) else None
        if not matrix:
            continue
        labels = [str(label) for label in metrics.get("confusion_matrix_labels", range(len(matrix)))]
        size = max(4.0, 0.6 * len(labels) + 2)
        figure = Figure(figsize=(size, size), layout="constrained")
        ax = figure.subplots()
        image = ax.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{feature}: confusion matrix")
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
        path = os.path.join(directory, f"confusion_matrix_{feature}.png")
        write_file_atomically(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
        written.append(path)
    return written
