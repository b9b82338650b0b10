"""accuracy_vs_chance: binomial against the best constant guess, permutation for balanced accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.metrics.chance import accuracy_vs_chance


@pytest.mark.parametrize("metric", ["accuracy", "balanced"])
def test_random_predictions_are_at_chance_and_perfect_ones_are_not(metric):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 8)
    at_chance = accuracy_vs_chance(y, rng.integers(0, 5, len(y)), metric=metric, permutations=500)
    assert not at_chance["better_than_chance"] and at_chance["p_value"] > 0.05 and at_chance["chance"] == pytest.approx(0.2)
    perfect = accuracy_vs_chance(y, y, metric=metric, permutations=500)
    assert perfect["better_than_chance"] and perfect["value"] == 1.0 and perfect["p_value"] < 0.01


def test_majority_guess_on_imbalanced_labels_is_chance():
    y = np.array([0] * 18 + [1] * 2)
    result = accuracy_vs_chance(y, np.zeros_like(y))  # 90 % accuracy by always saying "0"
    assert result["value"] == 0.9 and result["chance"] == 0.9 and not result["better_than_chance"]


def test_binomial_p_value_matches_scipy():
    from scipy.stats import binomtest

    y = np.array([0, 1] * 10)
    pred = y.copy()
    pred[:5] = 1 - pred[:5]  # 15 of 20 right
    assert accuracy_vs_chance(y, pred)["p_value"] == pytest.approx(binomtest(15, 20, 0.5, alternative="greater").pvalue)


def test_no_samples_is_not_better_than_chance():
    result = accuracy_vs_chance([], [])
    assert result["n"] == 0 and result["value"] is None and result["better_than_chance"] is False
