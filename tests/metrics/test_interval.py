"""kid_coverage_interval: small-class KID and coverage with bootstrap intervals."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.metrics.interval import MIN_IMAGES, kid_coverage_interval, small_sample_k
from medisynth.metrics.kid import kid_from_features


def test_six_images_get_an_interval_that_separates_far_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(6, 8))
    same = kid_coverage_interval(real, rng.normal(size=(6, 8)), n_boot=100)
    far = kid_coverage_interval(real, rng.normal(size=(6, 8)) + 5.0, n_boot=100)
    assert same["n_real"] == 6 and same["k"] == 2 and same["bootstrap"] == 100
    for r in (same, far):
        assert r["kid_ci"][0] <= r["kid"] <= r["kid_ci"][1]
        assert 0 <= r["coverage_ci"][0] <= r["coverage"] <= r["coverage_ci"][1] <= 1
    assert far["kid_ci"][0] > same["kid_ci"][1]  # a shifted set is clearly further away
    assert far["coverage"] == 0 and same["coverage"] > 0.5


def test_estimate_equals_kid_on_the_full_sets_for_equal_sizes():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    full_kid = kid_from_features(a, b, subsets=1, subset_size=10)[0]  # one subset of all 10: the whole sets
    assert kid_coverage_interval(a, b, n_boot=5)["kid"] == pytest.approx(full_kid)


def test_too_few_images_is_an_error():
    with pytest.raises(ValueError, match=f"at least {MIN_IMAGES}"):
        kid_coverage_interval(np.zeros((4, 3)), np.zeros((10, 3)))


@pytest.mark.parametrize("n,k", [(6, 2), (5, 1), (15, 5), (100, 5)])
def test_neighbourhood_shrinks_with_the_class(n, k):
    assert small_sample_k(n, 5) == k
