"""Paired tests over seeds and the per-image extras, against scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from medisynth.downstream.stats import mcnemar_exact, paired_bootstrap_ci, paired_over_seeds


def test_paired_t_test_matches_scipy_and_wilcoxon_is_skipped_below_six():
    a, b = [0.60, 0.62, 0.58], [0.65, 0.66, 0.61]
    out = paired_over_seeds(a, b)
    assert out["t_test_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert out["mean_difference"] == pytest.approx(np.mean(np.subtract(b, a)))
    assert out["wilcoxon_p"] is None
    sem = stats.sem(np.subtract(b, a))
    low, high = stats.t.interval(0.95, len(a) - 1, loc=out["mean_difference"], scale=sem)
    assert (out["ci95_low"], out["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert any("Wilcoxon" in n for n in out["notes"]) and any("low statistical power" in n for n in out["notes"])


def test_wilcoxon_from_six_pairs():
    a = np.array([0.60, 0.62, 0.58, 0.61, 0.59, 0.63])
    b = a + np.array([0.01, 0.03, 0.02, 0.05, 0.04, 0.06])
    out = paired_over_seeds(a, b)
    assert out["wilcoxon_p"] == pytest.approx(stats.wilcoxon(b, a).pvalue)


def test_constant_difference_and_missing_values():
    out = paired_over_seeds([0.5, 0.6, float("nan")], [0.6, 0.7, 0.9])
    assert out["n_pairs"] == 2 and out["t_test_p"] is None
    assert out["ci95_low"] == pytest.approx(0.1) and out["ci95_high"] == pytest.approx(0.1)  # zero spread
    assert any("identical" in n for n in out["notes"])


def test_bootstrap_ci_contains_observed_difference_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    a = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    b = np.where(rng.random(200) < 0.8, y, rng.integers(0, 3, 200))
    ci = paired_bootstrap_ci(y, a, b, balanced_accuracy_score, n_boot=300, seed=1)
    assert ci["ci_low"] < ci["difference"] < ci["ci_high"]
    assert ci["difference"] == pytest.approx(balanced_accuracy_score(y, b) - balanced_accuracy_score(y, a))
    assert ci == paired_bootstrap_ci(y, a, b, balanced_accuracy_score, n_boot=300, seed=1)


def test_mcnemar_counts_discordant_pairs():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([0, 1, 1, 1, 1, 0, 0, 1])  # right on 0, 4, 7
    b = np.array([0, 0, 0, 0, 1, 1, 1, 0])  # right on all but 7
    out = mcnemar_exact(y, a, b)
    assert (out["only_a_correct"], out["only_b_correct"]) == (1, 5)
    assert out["p"] == pytest.approx(stats.binomtest(5, 6, 0.5).pvalue)
