"""A quiet console: `experiment` ends with its metrics as a table, third-party notices and warnings appear only
with --verbose, and progress bars stay."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

from ludwig_llm.console import metrics_table

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOISE = ["FutureWarning", "Setting accelerator to CPU", "pip install kernels"]


def test_metrics_table_lists_scalar_metrics_per_feature():
    table = metrics_table({"label": {"accuracy": 0.75, "rows": 4, "confusion_matrix": [[1, 0], [0, 1]], "majority_label": "a"}})
    assert table.splitlines() == ["label:", "  metric          value", "  --------------  ----------", "  accuracy        0.7500",
                                  "  rows            4", "  majority_label  a"]


def test_experiment_is_quiet_unless_verbose(make_config, small_dataset_csv, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(trainer={"max_steps": 2}, generation={"max_new_tokens": 4})))
    base = [sys.executable, "-m", "ludwig_llm", "experiment", "--config", str(config), "--dataset", small_dataset_csv,
            "--output_directory", str(tmp_path / "results")]
    quiet = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr
    printed = quiet.stdout + quiet.stderr
    assert [noise for noise in NOISE if noise in printed] == [], printed
    assert "training: 100%" in quiet.stderr  # the progress bar stays
    lines = quiet.stdout.strip().splitlines()
    assert lines[-1].startswith("run directory:") and "exact_match" in quiet.stdout and lines[0] == "record:"
    verbose = subprocess.run(base + ["--verbose"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert verbose.returncode == 0 and "FutureWarning" in verbose.stderr, verbose.stderr
