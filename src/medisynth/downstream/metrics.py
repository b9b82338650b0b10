"""Classification metrics for the utility protocols (scikit-learn underneath).

Small test splits of imbalanced data sets often miss a class entirely; every
metric here handles that explicitly instead of letting scikit-learn warn and
return 0:

- ``macro_f1`` averages over the classes PRESENT in the test split;
- ``per_class_recall`` and ``per_class_auroc`` are ``None`` for an absent class;
- ``auroc_ovr`` is the mean one-vs-rest AUROC over present classes (an AUROC needs
  positives and negatives), ``None`` when fewer than two classes are present;
- ``qwk`` (quadratic weighted kappa) is computed over all class indices, which is
  only meaningful when the classes are ordinal grades (DR 0-4): ``None`` otherwise.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

#: the scalar metrics, in the order the tables and the plot show them
SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "auroc_ovr")


def classification_metrics(y_true, proba, num_classes: int, ordinal: bool = False) -> dict:
    """Metrics of probabilities ``proba`` (N x num_classes) against integer labels ``y_true``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y_true), num_classes):
        raise ValueError(f"proba has shape {proba.shape}, expected ({len(y_true)}, {num_classes})")
    y_pred = proba.argmax(1)
    present = sorted(set(y_true.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predictions of absent classes; handled by `present`
        recall = recall_score(y_true, y_pred, labels=list(range(num_classes)), average=None, zero_division=0)
        out = {
            "n": int(len(y_true)),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
            "qwk": _qwk(y_true, y_pred, num_classes) if ordinal else None,
        }
    per_class_auroc: list[float | None] = []
    for k in range(num_classes):
        positives = y_true == k
        if k in present and (~positives).any():
            per_class_auroc.append(float(roc_auc_score(positives, proba[:, k])))
        else:
            per_class_auroc.append(None)
    valid = [a for a in per_class_auroc if a is not None]
    out["auroc_ovr"] = float(np.mean(valid)) if valid else None  # valid is empty iff one class is present
    out["per_class_recall"] = [float(recall[k]) if k in present else None for k in range(num_classes)]
    out["per_class_auroc"] = per_class_auroc
    out["classes_absent_from_test"] = [k for k in range(num_classes) if k not in present]
    return out


def _qwk(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float | None:
    if len(set(y_true.tolist()) | set(y_pred.tolist())) < 2:
        return None  # undefined when truth and prediction are one single class
    return float(cohen_kappa_score(y_true, y_pred, labels=list(range(num_classes)), weights="quadratic"))


def is_ordinal(class_names) -> bool:
    """Class names that are all integers (DR grades "0".."4") are treated as ordinal."""
    try:
        [int(c) for c in class_names]
    except ValueError:
        return False
    return True
