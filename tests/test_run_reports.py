"""What a run leaves for people to read: learning curves (per run, and several runs side by side with
`ludwig_llm visualize`), a confusion-matrix PNG for category evaluation, and a real model card."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from PIL import Image

from ludwig_llm.api import LudwigLLM
from ludwig_llm.cli import main
from ludwig_llm.plots import LEARNING_CURVES, _curves
from ludwig_llm.results import DESCRIPTION, MODEL_DIR, TEST_STATISTICS, TRAINING_STATISTICS

REVIEWS = pd.DataFrame({
    "review": ["great", "I loved every minute of this wonderful film", "fine", "terrible and boring", "bad",
               "ok I guess", "superb", "meh", "awful, I walked out", "dreadful"],
    "sentiment": ["positive", "positive", "neutral", "negative", "negative", "neutral", "positive", "neutral",
                  "negative", "negative"],
    "split": ["train"] * 6 + ["test"] * 4,
})


@pytest.fixture(scope="module")
def runs(make_config, small_dataset, tmp_path_factory):
    """Two short LoRA experiments (different seeds), evaluated on validation rows at every step."""
    root = tmp_path_factory.mktemp("reports")
    return [LudwigLLM(make_config(trainer={"max_steps": 3, "eval_steps": 1, "seed": seed}, generation={"max_new_tokens": 4}))
            .experiment(dataset=small_dataset, output_directory=str(root), model_name=f"seed{seed}") for seed in (0, 1)]


@pytest.fixture(scope="module")
def category_run(make_config, tmp_path_factory):
    """In-context learning of a category (trainer none): evaluation with a confusion matrix."""
    config = make_config(**{"trainer": {"type": "none", "_replace": True}, "adapter": None,
                            "input_features": [{"name": "review", "type": "text"}],
                            "output_features": [{"name": "sentiment", "type": "category"}],
                            "prompt": {"template": "Review: {__sample__}\nSentiment:"},
                            "preprocessing": {"split": {"type": "fixed", "column": "split"}}})
    return LudwigLLM(config).experiment(dataset=REVIEWS, output_directory=str(tmp_path_factory.mktemp("category")))


def is_png(path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 200 and len(set(image.convert("L").getdata())) > 10


def test_fine_tune_run_directory_has_learning_curves(runs):
    run = runs[0].run_directory
    assert is_png(os.path.join(run, LEARNING_CURVES))
    curves = _curves(json.load(open(os.path.join(run, TRAINING_STATISTICS))))
    assert curves["loss"]["training"][0] == [1, 2, 3] and curves["loss"]["validation"][0] == [1, 2, 3]
    assert "learning_rate" in curves and len(curves) > 2  # validation metrics besides the loss


def test_category_evaluation_writes_a_confusion_matrix_png(category_run, tmp_path):
    assert is_png(os.path.join(category_run.run_directory, "confusion_matrix_sentiment.png"))
    assert not os.path.exists(os.path.join(category_run.run_directory, LEARNING_CURVES))  # nothing was trained
    result = LudwigLLM.load(os.path.join(category_run.run_directory, MODEL_DIR)).evaluate(REVIEWS, output_directory=str(tmp_path))
    assert is_png(os.path.join(result.output_directory, "confusion_matrix_sentiment.png"))


def test_model_card_describes_the_model(runs, category_run):
    run = runs[0].run_directory
    card = open(os.path.join(run, MODEL_DIR, "README.md"), encoding="utf-8").read()
    assert "[More Information Needed]" not in card
    fingerprint = json.load(open(os.path.join(run, DESCRIPTION)))["data_fingerprint"]
    bleu = json.load(open(os.path.join(run, TEST_STATISTICS)))["record"]["bleu"]
    for expected in ["library_name: peft", "Adapter: lora (r=8", "`record` (text)", "Sentence: {__sample__}",
                     "learning_rate: 0.005", fingerprint, f"| bleu | {bleu:.4g} |", "AutoPeftModelForCausalLM",
                     "LudwigLLM.load", "## Config"]:
        assert expected in card, expected
    card = open(os.path.join(category_run.run_directory, MODEL_DIR, "README.md"), encoding="utf-8").read()
    assert "base model unchanged" in card and "Labels: negative, neutral, positive" in card and "| accuracy |" in card


def test_visualize_puts_several_runs_side_by_side(runs, tmp_path, capsys):
    output = tmp_path / "compare.png"
    assert main(["visualize", "--run", runs[0].run_directory, runs[1].run_directory, "--output", str(output)]) == 0
    assert is_png(output) and str(output) in capsys.readouterr().out
    assert main(["visualize", "--run", str(tmp_path)]) == 1
    assert "not a run directory" in capsys.readouterr().err
