"""Utility metrics against scikit-learn on fixed predictions, including classes absent from the test split."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

from medisynth.downstream.metrics import classification_metrics, is_ordinal


def _proba(num_classes: int, n: int, seed: int) -> np.ndarray:
    p = np.random.default_rng(seed).random((n, num_classes)) + 0.05
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("num_classes,seed", [(2, 0), (3, 1), (5, 2)])
def test_metrics_match_sklearn_when_every_class_is_present(num_classes, seed):
    y = np.tile(np.arange(num_classes), 8)
    proba = _proba(num_classes, len(y), seed)
    pred = proba.argmax(1)
    m = classification_metrics(y, proba, num_classes, ordinal=True)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["qwk"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))
    assert m["per_class_recall"] == pytest.approx(list(recall_score(y, pred, average=None)))
    expected_auc = roc_auc_score(y, proba[:, 1]) if num_classes == 2 else roc_auc_score(y, proba, multi_class="ovr")
    assert m["auroc_ovr"] == pytest.approx(expected_auc)
    assert m["classes_absent_from_test"] == []


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_is_reported_not_counted():
    # class 2 is absent from the test labels; the model predicts it sometimes
    y = np.array([0, 0, 0, 1, 1, 1, 3, 3])
    proba = _proba(4, len(y), 3)
    proba[1] = [0.0, 0.0, 1.0, 0.0]
    pred = proba.argmax(1)
    m = classification_metrics(y, proba, 4, ordinal=True)
    present = [0, 1, 3]
    assert m["classes_absent_from_test"] == [2]
    assert m["per_class_recall"][2] is None and m["per_class_auroc"][2] is None
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=present, average="macro", zero_division=0))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    aucs = [roc_auc_score(y == k, proba[:, k]) for k in present]
    assert m["auroc_ovr"] == pytest.approx(np.mean(aucs))
    assert m["qwk"] == pytest.approx(cohen_kappa_score(y, pred, labels=[0, 1, 2, 3], weights="quadratic"))


def test_single_class_test_split_gives_none_for_undefined_metrics():
    y = np.zeros(5, dtype=int)
    proba = np.tile([0.9, 0.1], (5, 1))
    m = classification_metrics(y, proba, 2, ordinal=True)
    assert m["auroc_ovr"] is None and m["qwk"] is None and m["accuracy"] == 1.0


def test_qwk_only_for_ordinal_classes():
    y = np.array([0, 1, 0, 1])
    m = classification_metrics(y, _proba(2, 4, 0), 2, ordinal=False)
    assert m["qwk"] is None
    assert is_ordinal(["0", "1", "2"]) and not is_ordinal(["Cyst", "Normal"])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], np.ones((2, 3)) / 3, 2)
