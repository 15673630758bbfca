import json

import numpy as np
import pytest

from ludwig_llm.metrics.category import category_metrics, majority_baseline_accuracy

LABELS = ["cat", "dog", "bird"]
TRUE = ["cat", "cat", "cat", "dog", "dog", "bird", "bird", "bird"]
PRED = ["cat", "cat", "dog", "dog", "bird", "bird", "cat", "bird"]
PROBS = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.6, 0.2, 0.2],
        [0.3, 0.5, 0.2],
        [0.2, 0.7, 0.1],
        [0.1, 0.3, 0.6],
        [0.1, 0.1, 0.8],
        [0.5, 0.2, 0.3],
        [0.2, 0.2, 0.6],
    ]
)


def test_hand_computed_values():
    m = category_metrics(TRUE, PRED, PROBS, LABELS)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # rows = true, cols = predicted, in LABELS order
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert m["confusion_matrix_labels"] == LABELS
    # precision = column diagonal / column sum, recall = diagonal / row sum
    assert m["precision"] == pytest.approx({"cat": 2 / 3, "dog": 1 / 2, "bird": 2 / 3})
    assert m["recall"] == pytest.approx({"cat": 2 / 3, "dog": 1 / 2, "bird": 2 / 3})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m["unknown_predictions"] == 0


def test_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    m = category_metrics(TRUE, PRED, PROBS, LABELS)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(TRUE, PRED))
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(TRUE, PRED, average="macro"))
    assert m["confusion_matrix"] == metrics.confusion_matrix(TRUE, PRED, labels=LABELS).tolist()
    assert list(m["precision"].values()) == pytest.approx(
        metrics.precision_score(TRUE, PRED, labels=LABELS, average=None).tolist()
    )
    assert list(m["recall"].values()) == pytest.approx(
        metrics.recall_score(TRUE, PRED, labels=LABELS, average=None).tolist()
    )
    # sklearn wants sorted string labels, so give it column indices instead.
    true_index = [LABELS.index(t) for t in TRUE]
    assert m["roc_auc"] == pytest.approx(metrics.roc_auc_score(true_index, PROBS, multi_class="ovr", average="macro"))


def test_binary_roc_auc_known_value():
    # Classic example: scores 0.1, 0.4 (negatives), 0.35, 0.8 (positives) -> AUC 0.75.
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    m = category_metrics(["no", "no", "yes", "yes"], ["no", "no", "no", "yes"], probs, ["no", "yes"])
    assert m["roc_auc"] == pytest.approx(0.75)


def test_roc_auc_skips_label_absent_from_truth():
    # "bird" never occurs as a true label: AUC is the mean over cat and dog only.
    true = ["cat", "cat", "dog", "dog"]
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1]])
    m = category_metrics(true, ["cat", "dog", "cat", "dog"], probs, LABELS)
    # cat OvR: positives 0.7, 0.4 vs negatives 0.5, 0.1 -> 3/4; dog: 0.3, 0.8 vs 0.2, 0.5 -> 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    # bird appears nowhere, so it does not dilute macro F1 (cat F1 = dog F1 = 0.5)
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["precision"]["bird"] == 0.0


def test_roc_auc_undefined_cases():
    assert category_metrics(["a", "a"], ["a", "b"], np.array([[0.6, 0.4], [0.3, 0.7]]), ["a", "b"])["roc_auc"] is None
    assert category_metrics(["a", "b"], ["a", "b"], None, ["a", "b"])["roc_auc"] is None
    with pytest.raises(ValueError):
        category_metrics(["a", "b"], ["a", "b"], np.ones((2, 3)) / 3, ["a", "b"])


def test_unknown_predictions_count_as_wrong():
    m = category_metrics(["a", "b", "b"], ["a", "b", "maybe"], None, ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["unknown_predictions"] == 1
    assert m["confusion_matrix"] == [[1, 0], [0, 1]]
    assert m["recall"] == pytest.approx({"a": 1.0, "b": 0.5})
    with pytest.raises(ValueError):
        category_metrics(["c"], ["a"], None, ["a", "b"])


def test_output_is_json_serializable():
    m = category_metrics(TRUE, PRED, PROBS, LABELS)
    assert json.loads(json.dumps(m)) == m
    assert all(type(v) is float for v in (m["accuracy"], m["macro_f1"], m["roc_auc"]))


def test_majority_baseline():
    assert majority_baseline_accuracy(["a", "b", "a", "c"], ["a", "a", "b"]) == pytest.approx(0.5)
    # tie between a and b: first seen in training data wins
    assert majority_baseline_accuracy(["b", "b"], ["b", "a", "a", "b"]) == 1.0
    with pytest.raises(ValueError):
        majority_baseline_accuracy([], ["a"])
