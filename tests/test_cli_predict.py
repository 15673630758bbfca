"""`ludwig_llm predict` / `evaluate` / `experiment` from the command line on a tiny model: output directories,
`--split`, `--batch_size`, `test_statistics.json`, and one clear error line (exit 1, no traceback) for bad input."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from ludwig_llm.cli import main
from ludwig_llm.results import MODEL_DIR, TEST_STATISTICS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ludwig_llm", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)


def printed_path(out: str, prefix: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, out
    return lines[0][len(prefix):].strip()


@pytest.fixture(scope="module")
def run_dir(make_config, small_dataset_csv, tmp_path_factory) -> pathlib.Path:
    """`ludwig_llm experiment` of a short LoRA run: train, then evaluate the test split, in one run directory."""
    root = tmp_path_factory.mktemp("cli_run")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(trainer={"max_steps": 2}, generation={"max_new_tokens": 4})))
    assert main(["experiment", "--config", str(config), "--dataset", small_dataset_csv,
                 "--output_directory", str(root / "results")]) == 0
    return root / "results" / "experiment_run"


def test_experiment_writes_model_statistics_and_predictions(run_dir):
    assert {"config.yaml", MODEL_DIR, TEST_STATISTICS, "training_statistics.json", "description.json",
            "predictions.parquet", "predictions.csv"} <= set(os.listdir(run_dir))
    statistics = json.loads((run_dir / TEST_STATISTICS).read_text())["record"]
    assert statistics["rows"] == 4 and {"loss", "perplexity", "bleu", "rougeL", "exact_match"} <= set(statistics)
    assert len(pd.read_parquet(run_dir / "predictions.parquet")) == 4


def test_predict_writes_a_new_directory_each_time_in_row_order(run_dir, small_dataset, tmp_path, capsys):
    from ludwig_llm.api import LudwigLLM

    rows = small_dataset.head(12).drop(columns=["record"])
    rows.loc[[1, 6], "sentence"] += " And then, many years later, they moved once more to a much larger city far away."
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "predictions"
    args = ["predict", "--model_path", str(run_dir / MODEL_DIR), "--dataset", str(tmp_path / "rows.csv"), "--output_directory", str(out)]
    assert main(args + ["--batch_size", "3"]) == 0
    first = printed_path(capsys.readouterr().out, "predictions:")
    before = {name: os.stat(os.path.join(first, name)).st_mtime_ns for name in os.listdir(first)}
    assert main(args + ["--batch_size", "16"]) == 0
    second = printed_path(capsys.readouterr().out, "predictions:")
    assert (first, second) == (str(out / "predictions_run"), str(out / "predictions_run_1"))
    assert {name: os.stat(os.path.join(first, name)).st_mtime_ns for name in before} == before  # never overwritten

    parquet = pd.read_parquet(os.path.join(first, "predictions.parquet"))
    csv = pd.read_csv(os.path.join(first, "predictions.csv"), dtype=str, keep_default_na=False)
    assert list(parquet.columns) == ["record_response"] and len(parquet) == 12
    assert csv["record_response"].tolist() == parquet["record_response"].tolist()
    pd.testing.assert_frame_equal(pd.read_parquet(os.path.join(second, "predictions.parquet")), parquet)
    # the API, one row at a time, gives the same answer as the batched CLI: the order was kept
    model = LudwigLLM.load(str(run_dir / MODEL_DIR))
    for index in (0, 1, 6, 11):
        alone = model.predict(rows.iloc[[index]], output_directory=None).predictions["record_response"].iloc[0]
        assert alone == parquet["record_response"].iloc[index]


def test_evaluate_writes_test_statistics(run_dir, small_dataset_csv, tmp_path, capsys):
    args = ["evaluate", "--model_path", str(run_dir / MODEL_DIR), "--dataset", small_dataset_csv,
            "--output_directory", str(tmp_path), "--split", "test", "--batch_size", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    directory = pathlib.Path(printed_path(out, "evaluation:"))
    assert directory == tmp_path / "evaluation_run"
    statistics = json.loads((directory / TEST_STATISTICS).read_text())
    # `--split test` is exactly the run's test split: the same rows and metrics as the experiment's
    assert statistics == json.loads((run_dir / TEST_STATISTICS).read_text())
    pd.testing.assert_frame_equal(pd.read_parquet(directory / "predictions.parquet"), pd.read_parquet(run_dir / "predictions.parquet"))
    assert "exact_match" in out  # the statistics are printed too, as a table


# ------------------------------------------------------------------ bad input


def bad_input(case, run_dir, small_dataset_csv, tmp_path):
    """(argv, words the error line must contain) of each kind of bad input."""
    model = str(run_dir / MODEL_DIR)
    data = pd.read_csv(small_dataset_csv)
    files = {
        "renamed.csv": data.rename(columns={"sentence": "text"}),
        "no_target.csv": data.drop(columns=["record"]),
        "gaps.csv": data.head(5).assign(record=["a", None, "c", "d", "e"]),
    }
    for name, frame in files.items():
        frame.to_csv(tmp_path / name, index=False)
    (tmp_path / "header_only.csv").write_text("sentence,record\n")
    (tmp_path / "zero_bytes.csv").write_text("")
    (tmp_path / "not_a_model").mkdir(exist_ok=True)
    cases = {
        "model path is a plain directory": ("predict", str(tmp_path / "not_a_model"), small_dataset_csv,
                                            ["not_a_model", "not a ludwig_llm model"]),
        "model path is a base model": ("predict", str(data_base_model(run_dir)), small_dataset_csv, ["not a ludwig_llm model"]),
        "model path is the run directory": ("predict", str(run_dir), small_dataset_csv, ["model/ subdirectory"]),
        "model path does not exist": ("evaluate", str(tmp_path / "nowhere"), small_dataset_csv, ["nowhere", "does not exist"]),
        "dataset lacks the input column": ("predict", model, str(tmp_path / "renamed.csv"), ["renamed.csv", "'sentence'"]),
        "dataset without rows": ("predict", model, str(tmp_path / "header_only.csv"), ["header_only.csv", "empty"]),
        "dataset of zero bytes": ("evaluate", model, str(tmp_path / "zero_bytes.csv"), ["zero_bytes.csv", "empty"]),
        "dataset file missing": ("predict", model, str(tmp_path / "missing.csv"), ["missing.csv", "not found"]),
        "evaluate without targets": ("evaluate", model, str(tmp_path / "no_target.csv"), ["no_target.csv", "'record'"]),
        "evaluate with empty targets": ("evaluate", model, str(tmp_path / "gaps.csv"), ["gaps.csv", "empty in 1 row(s)"]),
    }
    command, model_path, dataset, words = cases[case]
    return [command, "--model_path", model_path, "--dataset", dataset, "--output_directory", str(tmp_path / "out")], words


def data_base_model(run_dir) -> str:
    return yaml.safe_load((run_dir / "config.yaml").read_text())["base_model"]


BAD_INPUT_CASES = ["model path is a plain directory", "model path is a base model", "model path is the run directory",
                   "model path does not exist", "dataset lacks the input column", "dataset without rows",
                   "dataset of zero bytes", "dataset file missing", "evaluate without targets", "evaluate with empty targets"]


def assert_one_error_line(stderr: str, words) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert not any("Traceback" in line for line in lines), stderr
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_is_one_error_line_and_exit_1(case, run_dir, small_dataset_csv, tmp_path, capsys):
    args, words = bad_input(case, run_dir, small_dataset_csv, tmp_path)
    assert main(args) == 1
    assert_one_error_line(capsys.readouterr().err, words)
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("value", ["0", "-2"])
def test_batch_size_below_one_is_refused(run_dir, small_dataset_csv, tmp_path, capsys, value):
    assert main(["predict", "--model_path", str(run_dir / MODEL_DIR), "--dataset", small_dataset_csv,
                 "--batch_size", value, "--output_directory", str(tmp_path / "out")]) == 1
    assert_one_error_line(capsys.readouterr().err, ["batch_size must be at least 1", value])


@pytest.mark.slow  # a real process: about 45 s on two CPU cores
def test_real_process_predicts_with_a_progress_bar_and_errors_without_traceback(run_dir, small_dataset_csv, tmp_path):
    done = cli("predict", "--model_path", str(run_dir / MODEL_DIR), "--dataset", small_dataset_csv,
               "--output_directory", str(tmp_path / "out"), "--split", "test")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Generating" in done.stderr and "4/4" in done.stderr  # the progress bar
    directory = printed_path(done.stdout, "predictions:")
    assert len(pd.read_csv(os.path.join(directory, "predictions.csv"))) == 4

    failed = cli("predict", "--model_path", str(run_dir), "--dataset", small_dataset_csv)
    assert failed.returncode == 1
    assert_one_error_line(failed.stderr, ["not a ludwig_llm model"])
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")


def test_category_experiment_then_evaluate_with_unknown_labels(make_config, tmp_path, capsys):
    rows = pd.DataFrame({"review": ["great", "awful", "fine", "superb", "bad", "terrible", "lovely", "poor"],
                         "sentiment": ["positive", "negative", "positive", "positive", "negative", "negative", "positive", "negative"],
                         "split": [0, 0, 0, 0, 2, 2, 2, 2]})
    rows.to_csv(tmp_path / "reviews.csv", index=False)
    config = make_config(trainer={"type": "none", "_replace": True}, adapter=None,
                         input_features=[{"name": "review", "type": "text"}],
                         output_features=[{"name": "sentiment", "type": "category"}],
                         prompt={"template": "Review: {__sample__}\nSentiment:"},
                         preprocessing={"split": {"type": "fixed", "column": "split"}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["experiment", "--config", str(tmp_path / "config.yaml"), "--dataset", str(tmp_path / "reviews.csv"),
                 "--output_directory", str(tmp_path / "results")]) == 0
    run = pathlib.Path(printed_path(capsys.readouterr().out, "run directory:"))
    statistics = json.loads((run / TEST_STATISTICS).read_text())["sentiment"]
    # training rows: 3 positive, 1 negative; test rows: 1 positive, 3 negative
    assert statistics["rows"] == 4 and statistics["majority_label"] == "positive"
    assert statistics["majority_baseline_accuracy"] == 0.25
    assert {"accuracy", "macro_f1", "precision", "recall", "confusion_matrix", "roc_auc"} <= set(statistics)

    rows.assign(sentiment=["positive", "negative", "mixed", "positive", "negative", "so-so", "positive", "negative"]).to_csv(
        tmp_path / "unknown.csv", index=False)
    assert main(["evaluate", "--model_path", str(run / MODEL_DIR), "--dataset", str(tmp_path / "unknown.csv"),
                 "--output_directory", str(tmp_path / "out")]) == 1
    assert_one_error_line(capsys.readouterr().err, ["unknown.csv", "'mixed'", "'so-so'", "does not know", "'negative', 'positive'"])
    assert not (tmp_path / "out").exists()
