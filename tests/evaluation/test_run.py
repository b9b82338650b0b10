"""evaluate's own decisions, apart from the end-to-end runs in test_verdict.py."""
from __future__ import annotations

import numpy as np

from medisynth.evaluation.run import _domain_chance


def _logits(pred: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[pred]


def test_domain_classifier_is_judged_on_balanced_accuracy():
    # EyePACS-like test split: 80 of grade 0, 5 of each rare grade. A class-balanced classifier that tells
    # every rare grade apart but calls half of grade 0 rare has plain accuracy 0.60, below the majority
    # share 0.80, and balanced accuracy 0.90: it is informative and must not be called "at chance"
    labels = np.array([0] * 80 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5)
    pred = labels.copy()
    pred[:40] = np.arange(40) % 4 + 1
    n_val = 10
    heldout_labels = np.concatenate([labels[:n_val], labels])  # val first, then test
    chance = _domain_chance(_logits(np.concatenate([labels[:n_val], pred]), 5), heldout_labels, n_val)
    assert chance["split"] == "test" and chance["metric"] == "balanced"
    assert chance["value"] == 0.9 and chance["chance"] == 0.2 and chance["better_than_chance"]
    assert np.mean(pred == labels) < np.bincount(labels).max() / len(labels)


def test_domain_classifier_at_chance_is_reported():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 80 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5)
    chance = _domain_chance(_logits(rng.integers(0, 5, len(labels)), 5), labels, 0)
    assert chance["split"] == "test" and not chance["better_than_chance"] and chance["p_value"] >= 0.05


def test_no_heldout_images():
    chance = _domain_chance(None, np.array([], dtype=np.int64), 0)
    assert chance["split"] is None and chance["value"] is None and not chance["better_than_chance"]
