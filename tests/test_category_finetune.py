"""Category outputs that fine-tune (issue #14), on the tiny model: `trainer: finetune` trains the LLM to answer with
the label's text and predicts by label scoring; `decoder: {type: classifier}` trains a classification head saved
beside the adapter; Ludwig's `category_extractor` with `match` and `preprocessing.fallback_label` give the labels."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from ludwig_llm.api import LudwigLLM
from ludwig_llm.data.pipeline import prepare_data
from ludwig_llm.data.tokenize import IGNORE_INDEX
from ludwig_llm.errors import UserError
from ludwig_llm.inference.label_scoring import label_ids_per_row
from ludwig_llm.models.bundle import MANIFEST_FILE
from ludwig_llm.models.classifier_head import HEAD_FILE, head_of
from ludwig_llm.models.loader import load_tokenizer
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.schema import load_config

LABELS = ["blue", "green", "red"]
COLUMNS = ["color_predictions", "color_probability"] + [f"color_probabilities_{label}" for label in LABELS]


def colors(count: int) -> pd.DataFrame:
    return pd.DataFrame([{"sentence": f"the {LABELS[i % 3]} thing number {i}", "color": LABELS[i % 3]} for i in range(count)])


@pytest.fixture
def category_config(make_config):
    def build(decoder=None, **sections):
        output = {"name": "color", "type": "category", **({"decoder": decoder} if decoder else {})}
        return make_config(output_features=[output], prompt={"template": "Sentence: {__sample__}\nColor:"}, **sections)
    return build


def assert_valid_predictions(predictions: pd.DataFrame, rows: int) -> None:
    assert list(predictions.columns) == COLUMNS and len(predictions) == rows
    assert set(predictions["color_predictions"]) <= set(LABELS)
    probabilities = predictions[COLUMNS[2:]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_finetune_trains_on_the_label_text_as_label_scoring_reads_it(category_config, tiny_model_dir):
    config = load_config(category_config())
    tokenizer = load_tokenizer(tiny_model_dir)
    data = prepare_data(config, tokenizer, dataset=colors(30), use_cache=False, progress=False)
    assert data.labels == LABELS
    row = data.train.examples[0]
    target = [token for token, label in zip(row["input_ids"], row["labels"]) if label != IGNORE_INDEX]
    prompt = row["input_ids"][:len(row["input_ids"]) - len(target)]
    label = data.splits.train.iloc[data.train.row_numbers[0]]["color"]
    scored = label_ids_per_row(tokenizer, [prompt], LABELS)[0][LABELS.index(label)]
    assert target == scored + [tokenizer.eos_token_id]  # " red" after "Color:", then end-of-sequence


def test_finetune_with_a_category_output_predicts_valid_labels_with_probabilities(category_config, tmp_path):
    config = category_config(trainer={"max_steps": 8, "learning_rate": 0.01})
    result = LudwigLLM(config).experiment(dataset=colors(40), output_directory=str(tmp_path))
    statistics = result.test_statistics["color"]
    assert {"accuracy", "macro_f1", "confusion_matrix"} <= set(statistics) and statistics["rows"] == 4
    model_directory = os.path.join(result.run_directory, MODEL_DIR)
    assert json.load(open(os.path.join(model_directory, MANIFEST_FILE)))["labels"] == LABELS
    assert not os.path.exists(os.path.join(model_directory, HEAD_FILE))
    predictions = LudwigLLM.load(model_directory).predict(colors(6), output_directory=None).predictions
    assert_valid_predictions(predictions, 6)


def test_classifier_decoder_trains_a_head_saved_beside_the_adapter(category_config, tmp_path):
    config = category_config(decoder={"type": "classifier"}, trainer={"max_steps": 30, "learning_rate": 0.01, "eval_steps": 10})
    data = colors(60)
    result = LudwigLLM(config).experiment(dataset=data, output_directory=str(tmp_path))
    model_directory = os.path.join(result.run_directory, MODEL_DIR)
    saved = load_file(os.path.join(model_directory, HEAD_FILE))
    assert saved["weight"].shape[0] == 3 and saved["bias"].shape == (3,)
    assert not any("classification_head" in key for key in load_file(os.path.join(model_directory, "adapter_model.safetensors")))
    statistics = json.load(open(os.path.join(result.run_directory, "training_statistics.json")))
    assert {"loss", "next_token_accuracy"} <= set(statistics["evaluations"][-1]["validation"])

    loaded = LudwigLLM.load(model_directory)
    head = head_of(loaded.loaded_model.model)
    np.testing.assert_array_equal(head.weight.detach().cpu().numpy(), saved["weight"].numpy())
    predictions = loaded.predict(data, output_directory=None).predictions
    assert_valid_predictions(predictions, 60)
    # three labels that differ by one word: 30 steps take the head well above chance on the rows it trained on
    assert (predictions["color_predictions"] == data["color"]).mean() > 0.6
    assert result.test_statistics["color"]["rows"] == 6


def test_category_extractor_match_keys_are_the_labels_and_the_fallback_label_takes_unknown_ones(category_config, tmp_path):
    match = {label: {"type": "contains", "value": label} for label in LABELS}
    config = category_config(decoder={"type": "category_extractor", "match": match}, trainer={"max_steps": 2})
    config["output_features"][0]["preprocessing"] = {"fallback_label": "red"}
    data = colors(30)
    data.loc[[0, 5], "color"] = ["purple", "crimson"]
    result = LudwigLLM(config).train(dataset=data, output_directory=str(tmp_path))
    manifest = json.load(open(os.path.join(result.run_directory, MODEL_DIR, MANIFEST_FILE)))
    assert manifest["labels"] == LABELS and manifest["extra"] == {}  # finetune keeps no label counts
    evaluation = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR)).evaluate(data, output_directory=None)
    assert evaluation.statistics["color"]["rows"] == 30  # 'purple' and 'crimson' were evaluated as 'red'

    del config["output_features"][0]["preprocessing"]
    with pytest.raises(UserError, match=r"column 'color' has 2 row\(s\) whose label is not one of \['blue', 'green', 'red'\]: "
                                        r"\['crimson', 'purple'\].*fallback_label"):
        LudwigLLM(config).train(dataset=data, output_directory=str(tmp_path))
