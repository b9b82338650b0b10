"""metrics.detectability: a classifier two-sample test that is at chance for one distribution and near 1 for two."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.metrics.detectability import DETECTABILITY_KEY, detectability


def _sets(shift: float, n_real: int, n_fake: int, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_real, dim)), rng.normal(size=(n_fake, dim)) + shift


@pytest.mark.parametrize("n_real,n_fake", [(200, 200), (300, 120), (120, 300)])
def test_one_distribution_cannot_be_told_apart(n_real, n_fake):
    real, fake = _sets(0.0, n_real, n_fake)
    out = detectability(real, fake)
    assert out["n_per_set"] == min(n_real, n_fake) and out["folds"] == 5
    assert 0.35 <= out[DETECTABILITY_KEY] <= 0.65
    assert not out["chance"]["better_than_chance"] and out["chance"]["chance"] == 0.5
    assert out["chance"]["n"] == 2 * out["n_per_set"]  # equal sets: chance is exactly one half


@pytest.mark.parametrize("shift,low", [(0.5, 0.75), (3.0, 0.99)])
def test_shifted_sets_are_told_apart(shift, low):
    real, fake = _sets(shift, 200, 150)
    out = detectability(real, fake)
    assert out[DETECTABILITY_KEY] >= low and out["chance"]["better_than_chance"] and out["chance"]["p_value"] < 1e-6


def test_seeded():
    real, fake = _sets(0.3, 120, 80)
    assert detectability(real, fake, seed=3) == detectability(real, fake, seed=3)


def test_too_few_vectors_is_a_value_error():
    real, fake = _sets(0.0, 50, 9)
    with pytest.raises(ValueError, match="at least 10 vectors in each set"):
        detectability(real, fake)
